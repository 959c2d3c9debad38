/* The C core of smartpool.Semaphore and BoundedSemaphore.
 *
 * Permits are a named semaphore `sem`; a bounded one also has `taken`, counting the permits out,
 * which a release must take from first (the atomic claim that keeps racing releases within the
 * bound). Each process that takes permits has a slot in the shared block; its second word is the
 * process's net number of permits taken, what a blocked acquirer gives back if the process dies.
 * The slot is claimed by the Python method `_slot` (under the block's meta lock), which then
 * caches it here with `_set_slot`; after that, acquire() and release() are a sem_trywait or
 * sem_post and an atomic add to the slot's count, with no Python frame (in Python they took ~5x
 * multiprocessing.Semaphore's pair). A plain acquire() with no permit left sleeps without the
 * GIL for one slice before handing over to `_acquire_slow` (dead holders, arguments, errors).
 */
#include "_fastlock.h"

#include <errno.h>

typedef struct {
    PyObject_HEAD
    PyObject *semobj;       /* the _multiprocessing.SemLock that owns `sem` */
    PyObject *takenobj;     /* ... and `taken`, or NULL when unbounded */
    sem_t *sem;             /* NULL until _bind_core */
    sem_t *taken;
    Py_buffer words;        /* export of the block's int64 words, keeps the mapping alive */
    int64_t slot_token;     /* process token the cached slot belongs to (0: none cached) */
    volatile int64_t *held; /* the slot's count word, NULL when untracked (all slots busy) */
} SemCore;

/* Make sure the slot cached is this process's (calling `self._slot()` if not): 0, or -1. */
static int
ensure_slot(SemCore *self)
{
    int64_t cached;
    Py_BEGIN_CRITICAL_SECTION(self);
    cached = self->slot_token;
    Py_END_CRITICAL_SECTION();
    if (cached == fl_token() && cached != 0) {
        return 0;
    }
    PyObject *r = PyObject_CallMethod((PyObject *)self, "_slot", NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* After taking a permit, in the critical section: count it out; 1, or -1 with an exception. */
static int
sem_taken(SemCore *self)
{
    if (self->taken != NULL && sem_post(self->taken) < 0) {
        int error = errno;
        sem_post(self->sem);
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (self->held != NULL) {
        __atomic_add_fetch(self->held, 1, __ATOMIC_SEQ_CST);
    }
    return 1;
}

/* acquire() without arguments: 1 taken, 0 for the slow path, -1 error. */
static int
sem_acquire_plain(SemCore *self)
{
    int result = 0;
    PyObject *semobj = NULL;
    sem_t *sem = NULL;
    if (ensure_slot(self) < 0) {
        return -1;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->sem != NULL && self->slot_token == fl_token()) {
        if (sem_trywait(self->sem) == 0) {
            result = sem_taken(self);
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
        if (self->sem == sem && self->slot_token == fl_token()) {
            result = sem_taken(self);
        }
        else { /* rebound (or forked) meanwhile: give the permit back, start again in Python */
            sem_post(sem);
            result = 0;
        }
        Py_END_CRITICAL_SECTION();
    }
    Py_DECREF(semobj);
    return result;
}

static PyObject *
SemCore_acquire(SemCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        int taken = sem_acquire_plain(self);
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
release_n(SemCore *self, long n)
{
    PyObject *result = NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "n must be one or more");
        return NULL;
    }
    if (ensure_slot(self) < 0) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    long got = 0, done = 0;
    if (self->sem == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "semaphore is not bound to shared state");
        goto end;
    }
    if (self->taken != NULL) {
        for (; got < n; got++) {
            if (sem_trywait(self->taken) < 0) {
                /* Fewer than n permits are out: give back the claims taken here. */
                for (long i = 0; i < got; i++) {
                    sem_post(self->taken);
                }
                PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
                goto end;
            }
        }
    }
    if (self->held != NULL) {
        __atomic_sub_fetch(self->held, n, __ATOMIC_SEQ_CST);
    }
    for (; done < n; done++) {
        if (sem_post(self->sem) < 0) {
            if (self->held != NULL) {
                __atomic_add_fetch(self->held, n - done, __ATOMIC_SEQ_CST);
            }
            PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
            goto end;
        }
    }
    result = Py_NewRef(Py_None);
end:;
    Py_END_CRITICAL_SECTION();
    return result;
}

static PyObject *
SemCore_release(SemCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"n", NULL};
    long n = 1;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 || (nkw == 1 && !PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)))) {
        PyErr_SetString(PyExc_TypeError, "release() takes at most 1 argument (n)");
        return NULL;
    }
    if (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), names[0])) {
        PyErr_SetString(PyExc_TypeError, "release() got an unexpected keyword argument");
        return NULL;
    }
    if (nargs + nkw == 1) {
        n = PyLong_AsLong(args[0]);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return release_n(self, n);
}

static PyObject *
SemCore_enter(SemCore *self, PyObject *Py_UNUSED(ignored))
{
    return SemCore_acquire(self, NULL, 0, NULL);
}

static PyObject *
SemCore_exit(SemCore *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return release_n(self, 1);
}

/* _count(n): add n to this process's count of permits taken (the slot must be cached). */
static PyObject *
SemCore_count(SemCore *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (ensure_slot(self) < 0) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    if (self->held != NULL) {
        __atomic_add_fetch(self->held, n, __ATOMIC_SEQ_CST);
    }
    Py_END_CRITICAL_SECTION();
    Py_RETURN_NONE;
}

static void
unbind(SemCore *self)
{
    self->sem = NULL;
    self->taken = NULL;
    self->held = NULL;
    self->slot_token = 0;
    if (self->words.obj != NULL) {
        PyBuffer_Release(&self->words);
    }
    Py_CLEAR(self->semobj);
    Py_CLEAR(self->takenobj);
}

/* _bind_core(sem, taken, words): the SemLocks (taken: None when unbounded) and the block. */
static PyObject *
SemCore_bind_core(SemCore *self, PyObject *args)
{
    PyObject *semobj, *takenobj, *words;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "OOO:_bind_core", &semobj, &takenobj, &words)) {
        return NULL;
    }
    sem_t *sem = fl_sem_of(semobj);
    if (sem == NULL) {
        return NULL;
    }
    sem_t *taken = NULL;
    if (takenobj != Py_None && (taken = fl_sem_of(takenobj)) == NULL) {
        return NULL;
    }
    if (fl_words(words, 0, 1, &view) == NULL) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    unbind(self);
    self->semobj = Py_NewRef(semobj);
    self->takenobj = taken == NULL ? NULL : Py_NewRef(takenobj);
    self->words = view;
    self->sem = sem;
    self->taken = taken;
    Py_END_CRITICAL_SECTION();
    Py_RETURN_NONE;
}

/* _set_slot(token, index): the slot at words[index] (its count at index + 1) is this process's;
 * index -1: all slots were busy, the process's permits go untracked. */
static PyObject *
SemCore_set_slot(SemCore *self, PyObject *args)
{
    long long token;
    Py_ssize_t index;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "Ln:_set_slot", &token, &index)) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    Py_ssize_t words = self->words.len / (Py_ssize_t)sizeof(int64_t);
    if (self->sem == NULL || index < -1 || index + 2 > words) {
        PyErr_SetString(PyExc_IndexError, "slot outside the block, or not bound");
    }
    else {
        self->held = index < 0 ? NULL : (volatile int64_t *)self->words.buf + index + 1;
        self->slot_token = (int64_t)token;
        result = Py_NewRef(Py_None);
    }
    Py_END_CRITICAL_SECTION();
    return result;
}

static int
SemCore_traverse(SemCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->semobj);
    Py_VISIT(self->takenobj);
    Py_VISIT(self->words.obj);
    return 0;
}

static int
SemCore_clear(SemCore *self)
{
    unbind(self);
    return 0;
}

static void
SemCore_dealloc(SemCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    unbind(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef SemCore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))SemCore_acquire, METH_FASTCALL | METH_KEYWORDS,
     "Take one permit; arguments and result as threading.Semaphore.acquire."},
    {"release", (PyCFunction)(void (*)(void))SemCore_release, METH_FASTCALL | METH_KEYWORDS,
     "Give back n permits, waking up to n waiters."},
    {"__enter__", (PyCFunction)SemCore_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))SemCore_exit, METH_FASTCALL, NULL},
    {"_count", (PyCFunction)SemCore_count, METH_O,
     "Add n to this process's count of permits taken."},
    {"_bind_core", (PyCFunction)SemCore_bind_core, METH_VARARGS,
     "Bind to the SemLocks (permits, taken or None) and the block's int64 words."},
    {"_set_slot", (PyCFunction)SemCore_set_slot, METH_VARARGS,
     "Cache this process's slot: (token, word index or -1)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot SemCore_slots[] = {
    {Py_tp_doc, "The C fast path of smartpool.Semaphore (private)."},
    {Py_tp_methods, SemCore_methods},
    {Py_tp_traverse, SemCore_traverse},
    {Py_tp_clear, SemCore_clear},
    {Py_tp_dealloc, SemCore_dealloc},
    {0, NULL},
};

static PyType_Spec SemCore_spec = {
    .name = "smartpool._sync._fastlock.SemCore",
    .basicsize = sizeof(SemCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = SemCore_slots,
};

int
fl_add_semaphore(PyObject *module)
{
    PyObject *type = PyType_FromSpec(&SemCore_spec);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "SemCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
