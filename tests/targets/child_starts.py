"""One child Python process started the way named by argv[1], which connects to the closed port argv[2] and
prints what it got (no pids: a plain run and a traced one print the same). argv[3]: another Python, for "python".

    spawn, forkserver    multiprocessing with that start method (children started by _posixsubprocess)
    subprocess           subprocess.run([sys.executable, "-c", ...])
    python               subprocess.run([argv[3], "-c", ...]): another interpreter
    fork                 os.fork(); the child raises (its exception is its own, not the program's)
"""
import multiprocessing
import os
import socket
import subprocess
import sys

CODE = ("import socket, sys\ntry:\n    socket.create_connection(('127.0.0.1', {port}))\nexcept OSError as exc:\n"
        "    print('child:', exc.errno, flush=True)\n")


def work(port: int) -> None:
    try:
        socket.create_connection(("127.0.0.1", port))
    except OSError as exc:
        print("child:", exc.errno, flush=True)


if __name__ == "__main__":
    how, port = sys.argv[1], int(sys.argv[2])
    if how in ("spawn", "forkserver"):
        process = multiprocessing.get_context(how).Process(target=work, args=(port,))
        process.start()
        process.join()
        print("exit:", process.exitcode)
    elif how in ("subprocess", "python"):
        python = sys.executable if how == "subprocess" else sys.argv[3]
        done = subprocess.run([python, "-c", CODE.format(port=port)])
        print("exit:", done.returncode)
    elif how == "fork":
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            socket.create_connection(("127.0.0.1", port))  # raises: the child dies of it, status 1
        _, status = os.waitpid(pid, 0)
        print("exit:", os.waitstatus_to_exitcode(status))
