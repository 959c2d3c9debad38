/* The C core of smartpool.RLock: one semaphore (1 while free) and three int64 words of the
 * shared block, the holder's process token, its thread ident and the recursion level.
 *
 * Re-entering, releasing one level and the uncontended acquire are a few loads and stores plus
 * a sem_trywait or sem_post, with no Python frame (in Python they took ~2.5x
 * multiprocessing.RLock's pair). A plain acquire() of a lock held elsewhere sleeps on the
 * semaphore without the GIL for one slice before handing over to the Python method
 * `_acquire_slow` (the dead-holder check, arguments, errors), as for Lock (_fastlock.c).
 */
#include "_fastlock.h"

#include <errno.h>
#include <pythread.h>

typedef struct {
    PyObject_HEAD
    PyObject *semobj;        /* the _multiprocessing.SemLock that owns `sem` */
    sem_t *sem;              /* NULL until _bind_core */
    Py_buffer words;         /* export of the block's int64 words, keeps the mapping alive */
    volatile int64_t *owner; /* owner[0]: holder's token (0: free); [1]: thread; [2]: level */
} RLockCore;

#define TID 1
#define COUNT 2

static void
rlock_taken(RLockCore *self, int64_t me)
{
    self->owner[TID] = me;
    self->owner[COUNT] = 1;
    self->owner[0] = fl_token();
}

/* acquire() without arguments: 1 taken, 0 for the slow path, -1 error. */
static int
rlock_acquire_plain(RLockCore *self)
{
    int result = 0;
    PyObject *semobj = NULL;
    sem_t *sem = NULL;
    int64_t me = (int64_t)PyThread_get_thread_ident();
    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->sem != NULL) {
        if (self->owner[0] == fl_token() && self->owner[TID] == me) {
            self->owner[COUNT] += 1;
            result = 1;
        }
        else if (sem_trywait(self->sem) == 0) {
            rlock_taken(self, me);
            result = 1;
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
            rlock_taken(self, me);
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
RLockCore_acquire(RLockCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        int taken = rlock_acquire_plain(self);
        if (taken != 0) {
            return taken > 0 ? Py_NewRef(Py_True) : NULL;
        }
    }
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
RLockCore_release(RLockCore *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = NULL;
    int64_t me = (int64_t)PyThread_get_thread_ident();
    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->sem == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock is not bound to shared state");
    }
    else if (self->owner[0] != fl_token() || self->owner[TID] != me) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
    }
    else {
        int64_t count = self->owner[COUNT] - 1;
        self->owner[COUNT] = count;
        if (count > 0) {
            result = Py_NewRef(Py_None);
        }
        else {
            self->owner[0] = 0;
            self->owner[TID] = 0;
            if (sem_post(self->sem) < 0) {
                PyErr_SetFromErrno(PyExc_OSError);
            }
            else {
                result = Py_NewRef(Py_None);
            }
        }
    }
    Py_END_CRITICAL_SECTION();
    return result;
}

static PyObject *
RLockCore_enter(RLockCore *self, PyObject *Py_UNUSED(ignored))
{
    return RLockCore_acquire(self, NULL, 0, NULL);
}

static PyObject *
RLockCore_exit(RLockCore *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return RLockCore_release(self, NULL);
}

static PyObject *
RLockCore_locked(RLockCore *self, PyObject *Py_UNUSED(ignored))
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
unbind(RLockCore *self)
{
    self->sem = NULL;
    self->owner = NULL;
    if (self->words.obj != NULL) {
        PyBuffer_Release(&self->words);
    }
    Py_CLEAR(self->semobj);
}

/* _bind_core(sem, held, words, index): the SemLock `sem` (`held` must be None: an RLock has
 * none) and words[index:index + 3] as holder, thread and level. */
static PyObject *
RLockCore_bind_core(RLockCore *self, PyObject *args)
{
    PyObject *semobj, *heldobj, *words;
    Py_ssize_t index;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "OOOn:_bind_core", &semobj, &heldobj, &words, &index)) {
        return NULL;
    }
    if (heldobj != Py_None) {
        PyErr_SetString(PyExc_TypeError, "an RLock has no `held` semaphore");
        return NULL;
    }
    sem_t *sem = fl_sem_of(semobj);
    if (sem == NULL) {
        return NULL;
    }
    volatile int64_t *owner = fl_words(words, index, 3, &view);
    if (owner == NULL) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    unbind(self);
    self->semobj = Py_NewRef(semobj);
    self->words = view;
    self->owner = owner;
    self->sem = sem;
    Py_END_CRITICAL_SECTION();
    Py_RETURN_NONE;
}

static int
RLockCore_traverse(RLockCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->semobj);
    Py_VISIT(self->words.obj);
    return 0;
}

static int
RLockCore_clear(RLockCore *self)
{
    unbind(self);
    return 0;
}

static void
RLockCore_dealloc(RLockCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    unbind(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef RLockCore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))RLockCore_acquire, METH_FASTCALL | METH_KEYWORDS,
     "Acquire, or re-enter if this thread holds it; as threading.RLock.acquire."},
    {"release", (PyCFunction)RLockCore_release, METH_NOARGS,
     "Release one level; RuntimeError unless the calling thread holds the lock."},
    {"locked", (PyCFunction)RLockCore_locked, METH_NOARGS,
     "Whether some thread of some process holds the lock."},
    {"__enter__", (PyCFunction)RLockCore_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))RLockCore_exit, METH_FASTCALL, NULL},
    {"_bind_core", (PyCFunction)RLockCore_bind_core, METH_VARARGS,
     "Bind to the SemLock and the three int64 words (from index) that record the holder."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot RLockCore_slots[] = {
    {Py_tp_doc, "The C fast path of smartpool.RLock (private)."},
    {Py_tp_methods, RLockCore_methods},
    {Py_tp_traverse, RLockCore_traverse},
    {Py_tp_clear, RLockCore_clear},
    {Py_tp_dealloc, RLockCore_dealloc},
    {0, NULL},
};

static PyType_Spec RLockCore_spec = {
    .name = "smartpool._sync._fastlock.RLockCore",
    .basicsize = sizeof(RLockCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = RLockCore_slots,
};

int
fl_add_rlock(PyObject *module)
{
    PyObject *type = PyType_FromSpec(&RLockCore_spec);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "RLockCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
