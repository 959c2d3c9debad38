/* Copying a large buffer into a shared-memory mapping without holding the GIL.
 *
 * A kept shared-memory file (see spares.py) is written over through the caller's own mapping
 * of it: a memcpy into pages already mapped, twice as fast as os.pwrite, which looks up and
 * copies page by page in the kernel. Python's own slice assignment holds the GIL for the whole
 * copy (tens of milliseconds for a large array); this lets other threads run meanwhile, and
 * several buffers be copied by several threads at once. buffers.py falls back to slice
 * assignment where the extension was not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *
copy_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer dst, src;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "copy_into(destination, source) takes 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &dst, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &src, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&dst);
        return NULL;
    }
    if (dst.len != src.len) {
        PyErr_Format(PyExc_ValueError, "copy_into: destination has %zd bytes, source %zd",
                     dst.len, src.len);
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    memcpy(dst.buf, src.buf, (size_t)src.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"copy_into", (PyCFunction)(void (*)(void))copy_into, METH_FASTCALL,
     "copy_into(destination, source, /)\n--\n\n"
     "Copy the bytes of `source` into the writable buffer `destination` (of the same length), "
     "without holding the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "smartpool._process._copy", NULL, 0, methods,
};

PyMODINIT_FUNC
PyInit__copy(void)
{
    return PyModule_Create(&module);
}
