/* The C cores of smartpool.Lock (here), RLock (_fastrlock.c) and Semaphore (_fastsem.c).
 *
 * Lock: two semaphores, `sem` (1 while the lock is free) and `held` (1 while it is held).
 * acquire takes `sem` and posts `held`; release takes `held` and posts `sem`. Taking `held` is
 * the atomic claim that makes a release succeed, so of two racing releasers (in any processes)
 * exactly one gets it and the other raises; checking `sem`'s value and then posting, in two
 * steps, let both succeed and two acquirers in.
 *
 * A Python method call alone costs about as much as multiprocessing.Lock's whole
 * acquire/release pair, so recording the holder (what lets a blocked acquirer notice that the
 * holder died) happens here. A plain acquire() on a taken lock sleeps on the semaphore without
 * the GIL for one slice (FL_POLL_SECONDS), as multiprocessing.Lock does; only when that slice
 * ends without the lock does it go to the Python method `_acquire_slow`, which looks for a dead
 * holder (a /proc read, ~20 us: paid on every contended acquire, it made a contended Lock 5x
 * slower than multiprocessing's). Calls with arguments and errors go there too; it holds the
 * full semantics, and `_lock.py` has a pure-Python twin of each core for interpreters where the
 * extension was not built.
 */
#include "_fastlock.h"

#include <errno.h>

/* -- Lock ------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *semobj;        /* the _multiprocessing.SemLock that owns `sem` */
    PyObject *heldobj;       /* ... and the one that owns `held` */
    sem_t *sem;              /* NULL until _bind_core */
    sem_t *held;             /* NULL until _bind_core */
    Py_buffer words;         /* export of the block's int64 words, keeps the mapping alive */
    volatile int64_t *owner; /* the holder's token, 0 when free */
} LockCore;

/* After taking `sem`: claim `held` for the releaser and record the holder (in the critical
 * section). 1, or -1 with an exception set. */
static int
lock_taken(LockCore *self, sem_t *sem)
{
    if (self->held == NULL || sem_post(self->held) < 0) {
        int error = self->held == NULL ? EINVAL : errno;
        sem_post(sem); /* not taken after all */
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    *self->owner = fl_token();
    return 1;
}

/* acquire() without arguments: 1 taken, 0 for the slow path, -1 error. */
static int
lock_acquire_plain(LockCore *self)
{
    int result = 0;
    PyObject *semobj = NULL;
    sem_t *sem = NULL;
    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->held != NULL) {
        if (sem_trywait(self->sem) == 0) {
            result = lock_taken(self, self->sem);
        }
        else if (errno == EAGAIN) {
            sem = self->sem;
            semobj = Py_NewRef(self->semobj);
        }
    }
    Py_END_CRITICAL_SECTION();
    if (sem == NULL) {
        return result;
    }
    result = fl_wait_slice(sem);
    if (result == 1) {
        Py_BEGIN_CRITICAL_SECTION(self);
        if (self->sem == sem) {
            result = lock_taken(self, sem);
        }
        else { /* rebound meanwhile: give the old lock back, start again in Python */
            sem_post(sem);
            result = 0;
        }
        Py_END_CRITICAL_SECTION();
    }
    Py_DECREF(semobj);
    return result;
}

static PyObject *
LockCore_acquire(LockCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        int taken = lock_acquire_plain(self);
        if (taken != 0) {
            return taken > 0 ? Py_NewRef(Py_True) : NULL;
        }
    }
    /* Still taken after a slice, called with arguments, or not bound: the Python method. */
    PyObject *stack[3];
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (total > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)", total);
        return NULL;
    }
    stack[0] = (PyObject *)self;
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i + 1] = args[i];
    }
    return fl_call_slow(stack, nargs + 1, kwnames);
}

static PyObject *
release_impl(LockCore *self)
{
    PyObject *result = NULL;
    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->sem == NULL || self->held == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock is not bound to shared state");
    }
    else if (sem_trywait(self->held) < 0) {
        if (errno == EAGAIN) {
            PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        }
        else {
            PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    else {
        *self->owner = 0;
        if (sem_post(self->sem) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
        }
        else {
            result = Py_NewRef(Py_None);
        }
    }
    Py_END_CRITICAL_SECTION();
    return result;
}

static PyObject *
LockCore_release(LockCore *self, PyObject *Py_UNUSED(ignored))
{
    return release_impl(self);
}

static PyObject *
LockCore_enter(LockCore *self, PyObject *Py_UNUSED(ignored))
{
    return LockCore_acquire(self, NULL, 0, NULL);
}

static PyObject *
LockCore_exit(LockCore *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return release_impl(self);
}

static PyObject *
LockCore_locked(LockCore *self, PyObject *Py_UNUSED(ignored))
{
    int value = 0, failed = 0, bound;
    Py_BEGIN_CRITICAL_SECTION(self);
    bound = self->sem != NULL;
    if (bound) {
        failed = sem_getvalue(self->sem, &value) < 0;
    }
    Py_END_CRITICAL_SECTION();
    if (!bound) {
        PyErr_SetString(PyExc_RuntimeError, "lock is not bound to shared state");
        return NULL;
    }
    if (failed) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyBool_FromLong(value <= 0);
}

static void
unbind(LockCore *self)
{
    self->sem = NULL;
    self->held = NULL;
    self->owner = NULL;
    if (self->words.obj != NULL) {
        PyBuffer_Release(&self->words);
    }
    Py_CLEAR(self->semobj);
    Py_CLEAR(self->heldobj);
}

/* _bind_core(sem, held, words, index): use the SemLocks `sem` and `held` and words[index] as
 * the owner. */
static PyObject *
LockCore_bind_core(LockCore *self, PyObject *args)
{
    PyObject *semobj, *heldobj, *words;
    Py_ssize_t index;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "OOOn:_bind_core", &semobj, &heldobj, &words, &index)) {
        return NULL;
    }
    sem_t *sem = fl_sem_of(semobj);
    sem_t *held = sem == NULL ? NULL : fl_sem_of(heldobj);
    if (held == NULL) {
        return NULL;
    }
    volatile int64_t *owner = fl_words(words, index, 1, &view);
    if (owner == NULL) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    unbind(self);
    self->semobj = Py_NewRef(semobj);
    self->heldobj = Py_NewRef(heldobj);
    self->words = view;
    self->owner = owner;
    self->sem = sem;
    self->held = held;
    Py_END_CRITICAL_SECTION();
    Py_RETURN_NONE;
}

static int
LockCore_traverse(LockCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->semobj);
    Py_VISIT(self->heldobj);
    Py_VISIT(self->words.obj);
    return 0;
}

static int
LockCore_clear(LockCore *self)
{
    unbind(self);
    return 0;
}

static void
LockCore_dealloc(LockCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    unbind(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef LockCore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))LockCore_acquire, METH_FASTCALL | METH_KEYWORDS,
     "Acquire the lock; arguments and result as threading.Lock.acquire."},
    {"release", (PyCFunction)LockCore_release, METH_NOARGS,
     "Release the lock; RuntimeError if it is not locked."},
    {"locked", (PyCFunction)LockCore_locked, METH_NOARGS,
     "Whether some thread of some process holds the lock."},
    {"__enter__", (PyCFunction)LockCore_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))LockCore_exit, METH_FASTCALL, NULL},
    {"_bind_core", (PyCFunction)LockCore_bind_core, METH_VARARGS,
     "Bind to the SemLocks (free, held) and the int64 word (by index) that records the holder."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot LockCore_slots[] = {
    {Py_tp_doc, "The C fast path of smartpool.Lock (private)."},
    {Py_tp_methods, LockCore_methods},
    {Py_tp_traverse, LockCore_traverse},
    {Py_tp_clear, LockCore_clear},
    {Py_tp_dealloc, LockCore_dealloc},
    {0, NULL},
};

static PyType_Spec LockCore_spec = {
    .name = "smartpool._sync._fastlock.LockCore",
    .basicsize = sizeof(LockCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = LockCore_slots,
};

int
fl_add_lock(PyObject *module)
{
    PyObject *type = PyType_FromSpec(&LockCore_spec);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "LockCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

/* -- the module ------------------------------------------------------------------------------ */

static PyObject *
set_token(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long token = PyLong_AsLongLong(arg);
    if (token == -1 && PyErr_Occurred()) {
        return NULL;
    }
    fl_set_token((int64_t)token);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_token", set_token, METH_O, "Set the token that acquire() records as the holder."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    PyObject *poll = PyFloat_FromDouble(FL_POLL_SECONDS);
    if (poll == NULL || PyModule_AddObject(module, "POLL", poll) < 0) {
        Py_XDECREF(poll);
        return -1;
    }
    if (fl_add_lock(module) < 0 || fl_add_rlock(module) < 0 || fl_add_semaphore(module) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* One module object per interpreter is fine: the state is the process's token only. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* Safe without the GIL (see _fastlock.h); importing it keeps a free-threaded build free. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef fastlock_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "smartpool._sync._fastlock",
    .m_doc = "C cores of smartpool.Lock, RLock and Semaphore (private).",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__fastlock(void)
{
    return PyModuleDef_Init(&fastlock_module);
}
