/* The probe's C twin (optional: wirestack/record/probe.py does the same in Python when this is not built).

   Two things only C can give the probe. (1) Wrappers without a Python frame: a `Shim` replaces a socket method
   (connect, accept, getaddrinfo, ...): it times the original, hands the outcome to a Python callback (`done` or
   `failed`) and returns the result or raises the very exception again. Having no frame of its own, it leaves
   the program's tracebacks exactly as under python. `choose` sends (sock, level, option) calls to a recording
   wrapper only for the options that matter. (2) A short path for the calls of a loop.

   A `Hot` object replaces one of socket.socket's data methods (send, sendall, sendto, recv, recvfrom). It times
   the original C method, and when the call succeeded and everything it needs is already known (the socket's
   entry in the probe's table, the caller's stack kept in its frame's `_Tag` for this instruction, the thread),
   it appends the "data" item itself, in the layout of items.DATA (`DATA_FIELDS` below, checked by a test):

       ("data", id, op, thread, tid, start, end, stack, socket, size, result, remote, pid)

   exactly as `Probe._note` builds it. Anything else goes to Python: an unusual call shape (keywords, too few
   arguments) to the Python wrapper (`python`), a call that raised to `failed(exc, sock, *args, _start=start)`
   (then the exception is raised again, untouched), and a first call from a place to `slow(op, sock, start,
   end, size, result, where, remote, 1)` = `Probe._note`, which walks the stack and learns what is missing.
   Nothing here decides what is recorded; it only skips the interpreter for the calls of a loop. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>
#include <frameobject.h>
#include <pythread.h>
#include <stddef.h>
#include <time.h>

#define FLUSH_NS 50000000LL

static const char *DATA_FIELDS[] = {"kind", "id", "op", "thread", "tid", "start", "end", "stack", "socket", "size",
                                    "result", "remote", "pid", NULL};

/* The exception being raised, taken (3.12+ keeps it as one object; before, as type, value, traceback). */
static PyObject *take_exception(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void give_exception(PyObject *value) { /* steals the reference */
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(value);
#else
    if (value == NULL)
        return;
    PyObject *type = (PyObject *)Py_TYPE(value);
    Py_INCREF(type);
    PyObject *tb = PyException_GetTraceback(value);
    PyErr_Restore(type, value, tb);
#endif
}

/* Python's own SIGINT handler (signal.default_int_handler) is the one installed; called with no error set. */
static int default_sigint(void) {
    PyObject *m = PyImport_ImportModule("signal");
    PyObject *h = m != NULL ? PyObject_CallMethod(m, "getsignal", "i", SIGINT) : NULL;
    PyObject *d = m != NULL ? PyObject_GetAttrString(m, "default_int_handler") : NULL;
    int same = h != NULL && h == d;
    Py_XDECREF(h);
    Py_XDECREF(d);
    Py_XDECREF(m);
    PyErr_Clear();
    return same;
}

/* A callback of the probe failed: an Exception is the probe's own bug and must not reach the program (it is
   counted); a KeyboardInterrupt or SystemExit raised while it ran is the program's and goes on. 0 to go on. */
static long probe_errors = 0;
static int swallow(void) {
    if (PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();
        probe_errors++;
        return 0;
    }
    return -1;
}

enum { SEND = 0, SENDTO = 1, RECV = 2, RECVFROM = 3 };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict; /* __name__, __doc__, __wrapped__ */
    int kind;
    Py_ssize_t batch;
    PyObject *op, *orig, *python, *failed, *slow, *probe, *sockets, *pending, *threads, *tag_type;
} Hot;

static PyObject *s_data, *s_f_trace, *s_stacks, *s_name, *s_ids, *s_pid, *s_flushed, *s_flush, *s_start, *s_f_lasti;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* time.time_ns()'s clock */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The stack kept for the caller's current instruction, or NULL (borrowed from the tag's dict; no error set). */
static PyObject *known_stack(Hot *self) {
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)
        return NULL;
    PyObject *mark = PyObject_GetAttr((PyObject *)frame, s_f_trace);
    if (mark == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *stack = NULL;
    if ((PyObject *)Py_TYPE(mark) == self->tag_type) {
        PyObject *stacks = PyObject_GetAttr(mark, s_stacks);
        if (stacks == NULL) {
            PyErr_Clear();
        } else {
            if (PyDict_CheckExact(stacks)) {
#if PY_VERSION_HEX >= 0x030B0000
                PyObject *lasti = PyLong_FromLong(PyFrame_GetLasti(frame));
#else
                PyObject *lasti = PyObject_GetAttr((PyObject *)frame, s_f_lasti);
#endif
                if (lasti != NULL) {
                    stack = PyDict_GetItemWithError(stacks, lasti);
                    Py_DECREF(lasti);
                }
                if (stack == NULL)
                    PyErr_Clear();
                /* the tag's dict keeps the stack alive while the frame lives, and the frame is running */
            }
            Py_DECREF(stacks);
        }
    }
    Py_DECREF(mark);
    return stack;
}

/* Append the item; 0 if it could not be built from what is known (no error set), -1 on a real error. */
static int fast(Hot *self, PyObject *sock, PyObject *start, PyObject *end, long long end_ns, PyObject *size,
                PyObject *result, PyObject *remote) {
    PyObject *key = PyLong_FromVoidPtr(sock);
    if (key == NULL)
        return -1;
    PyObject *info = PyDict_GetItemWithError(self->sockets, key);
    Py_DECREF(key);
    if (info == NULL || !PyList_CheckExact(info) || PyList_GET_SIZE(info) < 4) {
        PyErr_Clear();
        return 0;
    }
    if ((self->kind == SENDTO || self->kind == RECVFROM) && PyList_GET_ITEM(info, 3) == Py_None)
        return 0; /* the local address is not known yet: Python learns and describes it */
    PyObject *stack = known_stack(self);
    if (stack == NULL)
        return 0;
    Py_INCREF(stack);
    PyObject *serial = PyList_GET_ITEM(info, 0);
    Py_INCREF(serial);
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    PyObject *thread = ident ? PyDict_GetItemWithError(self->threads, ident) : NULL;
    Py_XDECREF(ident);
    PyObject *name = thread ? PyObject_GetAttr(thread, s_name) : NULL;
    if (name == NULL || !PyUnicode_Check(name)) {
        PyErr_Clear();
        Py_XDECREF(name);
        Py_DECREF(stack);
        Py_DECREF(serial);
        return 0;
    }
    PyObject *ids = PyObject_GetAttr(self->probe, s_ids);
    PyObject *cid = ids ? PyIter_Next(ids) : NULL;
    Py_XDECREF(ids);
    PyObject *pid = cid ? PyObject_GetAttr(self->probe, s_pid) : NULL;
    PyObject *tid = pid ? PyLong_FromUnsignedLong(PyThread_get_thread_native_id()) : NULL;
    PyObject *item = tid ? PyTuple_Pack(13, s_data, cid, self->op, name, tid, start, end, stack, serial, size,
                                        result, remote, pid) : NULL;
    Py_XDECREF(tid);
    Py_XDECREF(cid);
    Py_XDECREF(pid);
    Py_DECREF(name);
    Py_DECREF(stack);
    Py_DECREF(serial);
    if (item == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "wirestack probe: no call id");
        return -1;
    }
    int failed = PyList_Append(self->pending, item);
    Py_DECREF(item);
    if (failed)
        return -1;
    int flush = PyList_GET_SIZE(self->pending) >= self->batch;
    if (!flush) {
        PyObject *flushed = PyObject_GetAttr(self->probe, s_flushed);
        if (flushed == NULL)
            return -1;
        long long at = PyLong_AsLongLong(flushed);
        Py_DECREF(flushed);
        if (at == -1 && PyErr_Occurred())
            return -1;
        flush = end_ns - at > FLUSH_NS;
    }
    if (flush) {
        PyObject *done = PyObject_CallMethodNoArgs(self->probe, s_flush);
        if (done == NULL)
            return -1;
        Py_DECREF(done);
    }
    return 1;
}

/* The call raised: tell Python (which records it), then raise the same exception again. */
static PyObject *raised(Hot *self, PyObject *const *args, Py_ssize_t nargs, long long start_ns) {
    PyObject *value = take_exception();
    PyObject *call_args = PyTuple_New(nargs + 1);
    PyObject *kw = PyDict_New();
    PyObject *start = PyLong_FromLongLong(start_ns);
    if (call_args && kw && start && PyDict_SetItem(kw, s_start, start) == 0) {
        Py_INCREF(value ? value : Py_None);
        PyTuple_SET_ITEM(call_args, 0, value ? value : Py_None);
        for (Py_ssize_t i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(call_args, i + 1, args[i]);
        }
        PyObject *done = PyObject_Call(self->failed, call_args, kw);
        Py_XDECREF(done);
    }
    if (PyErr_Occurred() && swallow() < 0) { /* Ctrl-C while recording: it wins */
        Py_XDECREF(call_args);
        Py_XDECREF(kw);
        Py_XDECREF(start);
        Py_XDECREF(value);
        return NULL;
    }
    Py_XDECREF(call_args);
    Py_XDECREF(kw);
    Py_XDECREF(start);
    give_exception(value);
    return NULL;
}

static PyObject *hot_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Hot *self = (Hot *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 2 || ((self->kind == SENDTO) && nargs < 3))
        return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
    long long start_ns = now_ns();
    PyObject *r = PyObject_Vectorcall(self->orig, args, nargs, NULL);
    if (r == NULL)
        return raised(self, args, nargs, start_ns);
    long long end_ns = now_ns();
    PyObject *size = NULL, *result = NULL, *remote = Py_None;
    if (self->kind == SEND || self->kind == SENDTO) {
        Py_ssize_t n = PyObject_Size(args[1]);
        size = n < 0 ? NULL : PyLong_FromSsize_t(n);
        result = r;
        Py_INCREF(result);
        if (self->kind == SENDTO)
            remote = args[nargs - 1];
    } else {
        size = args[1];
        Py_INCREF(size);
        PyObject *data = r;
        if (self->kind == RECVFROM) {
            if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2)
                data = NULL;
            else {
                data = PyTuple_GET_ITEM(r, 0);
                remote = PyTuple_GET_ITEM(r, 1);
            }
        }
        Py_ssize_t n = data ? PyObject_Size(data) : -1;
        result = n < 0 ? NULL : PyLong_FromSsize_t(n);
    }
    Py_INCREF(remote);
    PyObject *start = PyLong_FromLongLong(start_ns), *end = PyLong_FromLongLong(end_ns);
    int done = -1;
    if (size && result && start && end) {
        done = fast(self, args[0], start, end, end_ns, size, result, remote);
        if (done == 0) {
            PyObject *where = (self->kind == SENDTO || self->kind == RECVFROM) ? Py_True : Py_False;
            PyObject *one = PyLong_FromLong(1);
            PyObject *slow_args[] = {self->op, args[0], start, end, size, result, where, remote, one};
            PyObject *noted = one ? PyObject_Vectorcall(self->slow, slow_args, 9, NULL) : NULL;
            Py_XDECREF(one);
            done = noted ? 1 : -1;
            Py_XDECREF(noted);
        }
    }
    Py_XDECREF(size);
    Py_XDECREF(result);
    Py_XDECREF(start);
    Py_XDECREF(end);
    Py_DECREF(remote);
    if (done < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "wirestack probe: could not record a call");
        Py_DECREF(r); /* as the Python wrapper: an error of the probe surfaces (it never happens in practice) */
        return NULL;
    }
    return r;
}

static PyObject *hot_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static int hot_traverse(Hot *self, visitproc visit, void *arg) {
    Py_VISIT(self->dict);
    Py_VISIT(self->op);
    Py_VISIT(self->orig);
    Py_VISIT(self->python);
    Py_VISIT(self->failed);
    Py_VISIT(self->slow);
    Py_VISIT(self->probe);
    Py_VISIT(self->sockets);
    Py_VISIT(self->pending);
    Py_VISIT(self->threads);
    Py_VISIT(self->tag_type);
    return 0;
}

static int hot_clear(Hot *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->op);
    Py_CLEAR(self->orig);
    Py_CLEAR(self->python);
    Py_CLEAR(self->failed);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->probe);
    Py_CLEAR(self->sockets);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->threads);
    Py_CLEAR(self->tag_type);
    return 0;
}

static void hot_dealloc(Hot *self) {
    PyObject_GC_UnTrack(self);
    hot_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject HotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wirestack._fastpath.Hot",
    .tp_basicsize = sizeof(Hot),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(Hot, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = hot_get,
    .tp_dictoffset = offsetof(Hot, dict),
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
    .tp_traverse = (traverseproc)hot_traverse,
    .tp_clear = (inquiry)hot_clear,
    .tp_dealloc = (destructor)hot_dealloc,
    .tp_doc = "A socket data method recorded by the probe (see wirestack/record/_fastpath.c).",
};

/* -- Shim: any method or function, recorded by Python callbacks, with no frame of its own ------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict; /* __name__, __doc__, __wrapped__ */
    PyObject *orig, *done, *failed;
} Shim;

/* (args tuple, kwargs dict or None) of a vectorcall */
static int pack_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **a, PyObject **kw) {
    *a = PyTuple_New(nargs);
    if (*a == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(*a, i, args[i]);
    }
    *kw = Py_None;
    Py_INCREF(Py_None);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        Py_DECREF(Py_None);
        *kw = PyDict_New();
        if (*kw == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyDict_SetItem(*kw, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0)
                return -1;
        }
    }
    return 0;
}

static PyObject *shim_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Shim *self = (Shim *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    long long start_ns = now_ns();
    PyObject *r = PyObject_Vectorcall(self->orig, args, nargs, kwnames);
    long long end_ns = now_ns();
    PyObject *value = r == NULL ? take_exception() : NULL;
    PyObject *a = NULL, *kw = NULL, *start = NULL, *end = NULL, *out = NULL;
    if (pack_args(args, nargs, kwnames, &a, &kw) == 0 && (start = PyLong_FromLongLong(start_ns)) != NULL &&
        (end = PyLong_FromLongLong(end_ns)) != NULL) {
        PyObject *cb_args[] = {r != NULL ? r : (value != NULL ? value : Py_None), a, kw, start, end};
        PyObject *cb = r != NULL ? self->done : self->failed;
        out = PyObject_Vectorcall(cb, cb_args, 5, NULL);
        if (out == NULL && !PyErr_ExceptionMatches(PyExc_Exception)) {
            /* A signal that came while the call ran (Ctrl-C during a getaddrinfo that glibc finishes anyway)
               raises as the callback starts, before it records anything: its handler has run, so record once
               more. A duplicate (the signal landing later, inside the callback) has the same thread, op and
               times: the loader drops it. Then, for Ctrl-C with Python's own handler, the call's outcome goes
               back and the interrupt is made pending again: Python raises KeyboardInterrupt at its next check,
               where it would have without the probe (after a caught gaierror, say). Any other handler ran
               already and is not run twice: its exception goes to the program now. */
            PyObject *signalled = take_exception();
            int interrupt = PyErr_GivenExceptionMatches(signalled, PyExc_KeyboardInterrupt);
            out = PyObject_Vectorcall(cb, cb_args, 5, NULL);
            if (out == NULL)
                PyErr_Clear();
            if (interrupt && default_sigint()) {
                Py_XDECREF(signalled);
                PyErr_SetInterruptEx(SIGINT);
            } else {
                give_exception(signalled);
            }
        }
    }
    Py_XDECREF(out);
    Py_XDECREF(a);
    Py_XDECREF(kw);
    Py_XDECREF(start);
    Py_XDECREF(end);
    if (PyErr_Occurred() && swallow() < 0) { /* Ctrl-C while recording: it wins */
        Py_XDECREF(r);
        Py_XDECREF(value);
        return NULL;
    }
    if (r == NULL)
        give_exception(value);
    return r;
}

static int shim_traverse(Shim *self, visitproc visit, void *arg) {
    Py_VISIT(self->dict);
    Py_VISIT(self->orig);
    Py_VISIT(self->done);
    Py_VISIT(self->failed);
    return 0;
}

static int shim_clear(Shim *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->orig);
    Py_CLEAR(self->done);
    Py_CLEAR(self->failed);
    return 0;
}

static void shim_dealloc(Shim *self) {
    PyObject_GC_UnTrack(self);
    shim_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ShimType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wirestack._fastpath.Shim",
    .tp_basicsize = sizeof(Shim),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(Shim, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = hot_get,
    .tp_dictoffset = offsetof(Shim, dict),
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
    .tp_traverse = (traverseproc)shim_traverse,
    .tp_clear = (inquiry)shim_clear,
    .tp_dealloc = (destructor)shim_dealloc,
    .tp_doc = "A socket method or function recorded by the probe, without a frame of its own.",
};

/* shim(orig, done, failed) */
static PyObject *shim(PyObject *module, PyObject *args) {
    PyObject *orig, *done, *failed;
    if (!PyArg_ParseTuple(args, "OOO", &orig, &done, &failed))
        return NULL;
    Shim *self = PyObject_GC_New(Shim, &ShimType);
    if (self == NULL)
        return NULL;
    self->vectorcall = shim_call;
    self->dict = NULL;
    Py_INCREF(orig);
    Py_INCREF(done);
    Py_INCREF(failed);
    self->orig = orig;
    self->done = done;
    self->failed = failed;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* -- Choose: (sock, level, option, ...) to the recording wrapper only for the options that matter ---------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict;
    PyObject *orig, *inner, *pairs;
    Py_ssize_t nargs;
} Choose;

static PyObject *choose_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Choose *self = (Choose *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *target = self->orig;
    if (kwnames == NULL && nargs >= 3 && (self->nargs == 0 || nargs == self->nargs)) {
        PyObject *key = PyTuple_Pack(2, args[1], args[2]);
        if (key == NULL)
            return NULL;
        int hit = PySet_Contains(self->pairs, key);
        Py_DECREF(key);
        if (hit < 0)
            PyErr_Clear(); /* an unhashable level: not one of ours */
        else if (hit)
            target = self->inner;
    }
    return PyObject_Vectorcall(target, args, nargsf, kwnames);
}

static int choose_traverse(Choose *self, visitproc visit, void *arg) {
    Py_VISIT(self->dict);
    Py_VISIT(self->orig);
    Py_VISIT(self->inner);
    Py_VISIT(self->pairs);
    return 0;
}

static int choose_clear(Choose *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->orig);
    Py_CLEAR(self->inner);
    Py_CLEAR(self->pairs);
    return 0;
}

static void choose_dealloc(Choose *self) {
    PyObject_GC_UnTrack(self);
    choose_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ChooseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wirestack._fastpath.Choose",
    .tp_basicsize = sizeof(Choose),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(Choose, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = hot_get,
    .tp_dictoffset = offsetof(Choose, dict),
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
    .tp_traverse = (traverseproc)choose_traverse,
    .tp_clear = (inquiry)choose_clear,
    .tp_dealloc = (destructor)choose_dealloc,
    .tp_doc = "socket.getsockopt/setsockopt, recorded only for some options.",
};

/* choose(orig, inner, pairs, nargs) */
static PyObject *choose(PyObject *module, PyObject *args) {
    PyObject *orig, *inner, *pairs;
    Py_ssize_t nargs;
    if (!PyArg_ParseTuple(args, "OOO!n", &orig, &inner, &PyFrozenSet_Type, &pairs, &nargs))
        return NULL;
    Choose *self = PyObject_GC_New(Choose, &ChooseType);
    if (self == NULL)
        return NULL;
    self->vectorcall = choose_call;
    self->dict = NULL;
    Py_INCREF(orig);
    Py_INCREF(inner);
    Py_INCREF(pairs);
    self->orig = orig;
    self->inner = inner;
    self->pairs = pairs;
    self->nargs = nargs;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *errors(PyObject *module, PyObject *unused) { return PyLong_FromLong(probe_errors); }

/* wrap(kind, op, orig, python, failed, slow, probe, sockets, pending, threads, tag_type, batch) */
static PyObject *wrap(PyObject *module, PyObject *args) {
    int kind;
    Py_ssize_t batch;
    PyObject *o[10];
    if (!PyArg_ParseTuple(args, "iUOOOOOO!O!O!On", &kind, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &PyDict_Type,
                          &o[6], &PyList_Type, &o[7], &PyDict_Type, &o[8], &o[9], &batch))
        return NULL;
    if (kind < SEND || kind > RECVFROM) {
        PyErr_SetString(PyExc_ValueError, "unknown kind");
        return NULL;
    }
    Hot *self = PyObject_GC_New(Hot, &HotType);
    if (self == NULL)
        return NULL;
    self->vectorcall = hot_call;
    self->dict = NULL;
    self->kind = kind;
    self->batch = batch;
    PyObject **fields[] = {&self->op, &self->orig, &self->python, &self->failed, &self->slow, &self->probe,
                           &self->sockets, &self->pending, &self->threads, &self->tag_type};
    for (int i = 0; i < 10; i++) {
        Py_INCREF(o[i]);
        *fields[i] = o[i];
    }
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyMethodDef methods[] = {
    {"wrap", wrap, METH_VARARGS, "wrap(kind, op, orig, python, failed, slow, probe, sockets, pending, threads, "
                                 "tag_type, batch): a Hot method (kinds: 0 send/sendall, 1 sendto, 2 recv, 3 "
                                 "recvfrom)"},
    {"shim", shim, METH_VARARGS, "shim(orig, done, failed): orig, timed, its outcome handed to "
                                 "done(result, args, kwargs, start, end) or failed(exc, args, kwargs, start, end)"},
    {"choose", choose, METH_VARARGS, "choose(orig, inner, pairs, nargs): (sock, level, option, ...) to inner when "
                                     "(level, option) is in pairs, else to orig"},
    {"errors", errors, METH_NOARGS, "errors(): how many times a callback of the probe failed (its own bugs)"},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m) {
    if (PyType_Ready(&HotType) < 0 || PyType_Ready(&ShimType) < 0 || PyType_Ready(&ChooseType) < 0)
        return -1;
    const char *names[] = {"data", "f_trace", "stacks", "_name", "_ids", "pid", "_flushed", "flush", "_start",
                           "f_lasti"};
    PyObject **slots[] = {&s_data, &s_f_trace, &s_stacks, &s_name, &s_ids, &s_pid, &s_flushed, &s_flush, &s_start,
                          &s_f_lasti};
    for (int i = 0; i < 10; i++) {
        if (*slots[i] == NULL && (*slots[i] = PyUnicode_InternFromString(names[i])) == NULL)
            return -1;
    }
    Py_ssize_t n = 0;
    while (DATA_FIELDS[n] != NULL)
        n++;
    PyObject *fields = PyTuple_New(n);
    for (Py_ssize_t i = 0; fields != NULL && i < n; i++) {
        PyObject *name = PyUnicode_FromString(DATA_FIELDS[i]);
        if (name == NULL) {
            Py_DECREF(fields);
            return -1;
        }
        PyTuple_SET_ITEM(fields, i, name);
    }
    if (fields == NULL || PyModule_AddObject(m, "DATA_FIELDS", fields) < 0) {
        Py_XDECREF(fields);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_mod_gil
    /* The probe's tables are plain dicts and lists shared with Python code that relies on the GIL: on a
       free-threaded build the runner does not load this module at all (pure Python instead), so this says
       what is true rather than pretending. */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, 0, methods, module_slots};

PyMODINIT_FUNC PyInit__fastpath(void) { return PyModuleDef_Init(&module); }
