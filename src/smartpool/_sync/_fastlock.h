/* Shared by the C cores of smartpool's locks and semaphores (_fastlock.c, _fastrlock.c,
 * _fastsem.c): the process token, the waiting slice, and what makes them safe without the GIL.
 *
 * Free-threaded builds (Py_GIL_DISABLED): each core's fields (the semaphores and the words of
 * the shared block) are read and written inside a critical section on the core object, so a
 * rebinding (`_bind_core`, when the registry re-points a module global) never frees what
 * another thread is using; a blocked wait holds a strong reference to the semaphore it sleeps
 * on. On builds with a GIL the critical-section macros do nothing, and before 3.13 they do not
 * exist: they are defined empty here.
 */
#ifndef SMARTPOOL_FASTLOCK_H
#define SMARTPOOL_FASTLOCK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <semaphore.h>
#include <stdint.h>

#ifndef Py_BEGIN_CRITICAL_SECTION
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

/* Seconds a blocked acquire sleeps on its semaphore, without the GIL, before handing over to
 * the Python slow path, which checks whether the holder died (smartpool._sync._owner.POLL). */
#define FL_POLL_SECONDS 0.05

/* Token (pid and start time) of this process, set from Python and refreshed after fork. */
int64_t fl_token(void);
void fl_set_token(int64_t token);

/* The sem_t of a _multiprocessing.SemLock, or NULL with an exception set. */
sem_t *fl_sem_of(PyObject *semobj);

/* Wait up to FL_POLL_SECONDS for `sem` with the GIL released (the caller holds a reference to
 * the SemLock that owns it). 1: taken; 0: not taken (timed out, or interrupted by a signal
 * whose handler did not raise); -1: an exception is set. */
int fl_wait_slice(sem_t *sem);

/* An int64 word of a writable buffer: `view` is filled (release it with PyBuffer_Release);
 * `count` words from `index` must lie inside it. NULL with an exception set otherwise. */
volatile int64_t *fl_words(PyObject *words, Py_ssize_t index, Py_ssize_t count, Py_buffer *view);

/* self._acquire_slow(*args[1:], **kwnames): args[0] is self. */
PyObject *fl_call_slow(PyObject *const *args, size_t nargsf, PyObject *kwnames);

/* Add the cores' types to the module. */
int fl_add_lock(PyObject *module);
int fl_add_rlock(PyObject *module);
int fl_add_semaphore(PyObject *module);

#endif
