/* The probe's short path in C (optional: wirestack/record/probe.py does the same in Python when this is not built).

   A `Hot` object replaces one of socket.socket's data methods (send, sendall, sendto, recv, recvfrom). It times
   the original C method, and when the call succeeded and everything it needs is already known (the socket's
   entry in the probe's table, the caller's stack kept in its frame's `_Tag` for this instruction, the thread),
   it appends the "data" item itself:

       ("data", id, op, thread, start, end, stack, socket, size, result, remote, pid)

   exactly as `Probe._note` builds it. Anything else goes to Python: an unusual call shape (keywords, too few
   arguments) to the Python wrapper (`python`), a call that raised to `failed(exc, sock, *args, _start=start)`
   (then the exception is raised again, untouched), and a first call from a place to `slow(op, sock, start,
   end, size, result, where, remote, 1)` = `Probe._note`, which walks the stack and learns what is missing.
   Nothing here decides what is recorded; it only skips the interpreter for the calls of a loop. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <pythread.h>
#include <stddef.h>
#include <time.h>

#define FLUSH_NS 50000000LL

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
    PyObject *item = pid ? PyTuple_Pack(12, s_data, cid, self->op, name, start, end, stack, serial, size, result,
                                        remote, pid) : NULL;
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
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
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
    PyErr_Clear(); /* a failure to record never replaces the program's own exception */
    Py_XDECREF(call_args);
    Py_XDECREF(kw);
    Py_XDECREF(start);
    PyErr_Restore(type, value, tb);
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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&HotType) < 0)
        return NULL;
    const char *names[] = {"data", "f_trace", "stacks", "_name", "_ids", "pid", "_flushed", "flush", "_start",
                           "f_lasti"};
    PyObject **slots[] = {&s_data, &s_f_trace, &s_stacks, &s_name, &s_ids, &s_pid, &s_flushed, &s_flush, &s_start,
                          &s_f_lasti};
    for (int i = 0; i < 10; i++) {
        if (*slots[i] == NULL && (*slots[i] = PyUnicode_InternFromString(names[i])) == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
