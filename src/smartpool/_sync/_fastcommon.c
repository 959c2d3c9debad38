/* Helpers shared by the C cores of smartpool's locks and semaphores (see _fastlock.h). */
#include "_fastlock.h"

#include <errno.h>
#include <time.h>

static int64_t current_token = 0;

PyObject *
fl_call_slow(PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* The name is made per call, not kept in a static: objects must not be shared between
     * interpreters, and this is the slow path already. */
    PyObject *name = PyUnicode_InternFromString("_acquire_slow");
    if (name == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_VectorcallMethod(name, args, nargsf, kwnames);
    Py_DECREF(name);
    return result;
}

void
fl_set_token(int64_t token)
{
    __atomic_store_n(&current_token, token, __ATOMIC_RELAXED);
}

int64_t
fl_token(void)
{
    return __atomic_load_n(&current_token, __ATOMIC_RELAXED);
}

sem_t *
fl_sem_of(PyObject *semobj)
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

int
fl_wait_slice(sem_t *sem)
{
    struct timespec deadline;
    int r, error;
    clock_gettime(CLOCK_REALTIME, &deadline); /* sem_timedwait's clock */
    deadline.tv_nsec += (long)(FL_POLL_SECONDS * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    Py_BEGIN_ALLOW_THREADS
    r = sem_timedwait(sem, &deadline);
    error = errno;
    Py_END_ALLOW_THREADS
    if (r == 0) {
        return 1;
    }
    if (error == ETIMEDOUT) {
        return 0;
    }
    if (error == EINTR) {
        return PyErr_CheckSignals() < 0 ? -1 : 0;
    }
    errno = error;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

volatile int64_t *
fl_words(PyObject *words, Py_ssize_t index, Py_ssize_t count, Py_buffer *view)
{
    if (PyObject_GetBuffer(words, view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (index < 0 || (index + count) * (Py_ssize_t)sizeof(int64_t) > view->len) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_IndexError, "word outside the block");
        return NULL;
    }
    return (volatile int64_t *)((char *)view->buf + index * sizeof(int64_t));
}
