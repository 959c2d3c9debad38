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

static PyModuleDef_Slot slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    /* No state at all: the module may load in any interpreter. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* Needs no GIL: copy_into holds both buffer exports for the whole copy, and the copy itself
     * runs without the GIL already. Importing it keeps a free-threaded build free. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "smartpool._process._copy",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__copy(void)
{
    return PyModuleDef_Init(&module);
}
