/* The uncontended path of smartpool.Lock in C: a sem_trywait and a sem_post plus one store of
 * the holder's token into shared memory, with no Python frame in between.
 *
 * Two semaphores: `sem` (1 while the lock is free) and `held` (1 while it is held). acquire
 * takes `sem` and posts `held`; release takes `held` and posts `sem`. Taking `held` is the
 * atomic claim that makes a release succeed, so of two racing releasers (in any processes)
 * exactly one gets it and the other raises; checking `sem`'s value and then posting, in two
 * steps, let both succeed and two acquirers in.
 *
 * A Python method call alone costs about as much as multiprocessing.Lock's whole
 * acquire/release pair, so recording the holder (what lets a blocked acquirer notice that the
 * holder died) has to happen here to keep the pair within 2x of multiprocessing.Lock. Anything
 * but the plain uncontended call (arguments, contention, errors) goes to the Python method
 * `_acquire_slow`, which holds the full semantics; `_lock.py` has a pure-Python twin of this
 * type for interpreters where the extension was not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <semaphore.h>
#include <stdint.h>

/* Token (pid and start time) of this process; set from Python, refreshed after fork. */
static int64_t current_token = 0;
static PyObject *str_acquire_slow = NULL; /* interned "_acquire_slow" */

typedef struct {
    PyObject_HEAD
    PyObject *semobj;      /* the _multiprocessing.SemLock that owns `sem` */
    PyObject *heldobj;     /* ... and the one that owns `held` */
    sem_t *sem;            /* NULL until _bind_core */
    sem_t *held;           /* NULL until _bind_core, and for RLock, which has no use for it */
    Py_buffer words;       /* export of the block's int64 words, keeps the mapping alive */
    volatile int64_t *owner; /* the holder's token, 0 when free */
} LockCore;

static int
check_bound(LockCore *self)
{
    if (self->sem == NULL || self->held == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock is not bound to shared state");
        return -1;
    }
    return 0;
}

static PyObject *
LockCore_acquire(LockCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL && self->held != NULL && sem_trywait(self->sem) == 0) {
        if (sem_post(self->held) < 0) {
            int error = errno;
            sem_post(self->sem); /* not taken after all */
            errno = error;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        *self->owner = current_token;
        Py_RETURN_TRUE;
    }
    /* Contended, called with arguments, or not bound: the Python method decides. */
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
    return PyObject_VectorcallMethod(str_acquire_slow, stack, nargs + 1, kwnames);
}

static PyObject *
release_impl(LockCore *self)
{
    if (check_bound(self) < 0) {
        return NULL;
    }
    if (sem_trywait(self->held) < 0) {
        if (errno == EAGAIN) {
            PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
            return NULL;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    *self->owner = 0;
    if (sem_post(self->sem) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
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
    int value;
    if (self->sem == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock is not bound to shared state");
        return NULL;
    }
    if (sem_getvalue(self->sem, &value) < 0) {
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

/* The sem_t of a _multiprocessing.SemLock, or NULL with an exception set. */
static sem_t *
sem_of(PyObject *semobj)
{
    PyObject *handle_obj = PyObject_GetAttrString(semobj, "handle");
    if (handle_obj == NULL) {
        return NULL;
    }
    void *sem = PyLong_AsVoidPtr(handle_obj);
    Py_DECREF(handle_obj);
    if (sem == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "semaphore has no handle");
    }
    return (sem_t *)sem;
}

/* _bind_core(sem, held, words, index): use the SemLocks `sem` and `held` (None: no fast path,
 * as for RLock) and words[index] as the owner. */
static PyObject *
LockCore_bind_core(LockCore *self, PyObject *args)
{
    PyObject *semobj, *heldobj, *words;
    Py_ssize_t index;
    if (!PyArg_ParseTuple(args, "OOOn:_bind_core", &semobj, &heldobj, &words, &index)) {
        return NULL;
    }
    sem_t *sem = sem_of(semobj);
    if (sem == NULL) {
        return NULL;
    }
    sem_t *held = NULL;
    if (heldobj != Py_None && (held = sem_of(heldobj)) == NULL) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(words, &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (index < 0 || (index + 1) * (Py_ssize_t)sizeof(int64_t) > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_IndexError, "owner word outside the block");
        return NULL;
    }
    unbind(self);
    Py_INCREF(semobj);
    self->semobj = semobj;
    if (held != NULL) {
        Py_INCREF(heldobj);
        self->heldobj = heldobj;
    }
    self->words = view;
    self->owner = (volatile int64_t *)((char *)view.buf + index * sizeof(int64_t));
    self->sem = sem;
    self->held = held;
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

static PyObject *
set_token(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long token = PyLong_AsLongLong(arg);
    if (token == -1 && PyErr_Occurred()) {
        return NULL;
    }
    current_token = (int64_t)token;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_token", set_token, METH_O, "Set the token that acquire() records as the holder."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    if (str_acquire_slow == NULL) {
        str_acquire_slow = PyUnicode_InternFromString("_acquire_slow");
        if (str_acquire_slow == NULL) {
            return -1;
        }
    }
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

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef fastlock_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "smartpool._sync._fastlock",
    .m_doc = "C fast path of smartpool.Lock (private).",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__fastlock(void)
{
    return PyModuleDef_Init(&fastlock_module);
}
