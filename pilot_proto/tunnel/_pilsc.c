/*
 * Optional C accelerator for PILS sealing and in-order opening (draft 7.2, 10.2, 11).
 *
 * One PilsKey holds two OpenSSL EVP contexts for AES-256-GCM initialised with one session key
 * (an encrypting one and a decrypting one), so a call only sets the 12-byte nonce instead of
 * expanding the key again.  It does the byte work and nothing else:
 *
 *   seal(head, prefix, counter, packet) -> bytes
 *       head = b"PILS" + sender (u32 BE), prefix = 4-byte nonce prefix, counter = u64.
 *       Returns the whole frame  head || prefix || counter BE || ciphertext || tag  in ONE bytes
 *       object, encrypted in place, with AAD = the sender (head[4:8]), as PilsSealer.seal builds it.
 *
 *   open_frame(frame, head, prefix, expected) -> bytes | None
 *   open(nonce, ciphertext, aad, prefix, expected) -> bytes | None
 *       The in-order fast path of PilsOpener.open_frame / PilsOpener.open: the plaintext if and only
 *       if the frame (or nonce + ciphertext) is a complete PILS frame whose head is `head`
 *       (open: whose AAD is `aad`), whose nonce is prefix || expected, whose tag verifies with
 *       AAD = sender, and whose inner packet's source node (bytes 6..9) equals the sender.  In
 *       every other case None: the Python layer then runs its own full path, which decides the
 *       answer (error code, replay state) exactly as without this module.  Inputs that are not
 *       `bytes` also give None, so the pure path sees them unchanged.
 *
 * Counters, replay windows, prefixes and every error stay in Python (pilot_proto/tunnel/aead.py).
 * The GIL is held throughout, so one context is never used by two threads at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#ifndef PILSC_SOURCE_SHA256
#define PILSC_SOURCE_SHA256 "" /* built other than by setup.py: no hash of this file to compare with */
#endif

#define KEY_LEN 32
#define HEAD_LEN 8
#define PREFIX_LEN 4
#define NONCE_LEN 12
#define TAG_LEN 16
#define FRAME_MIN (HEAD_LEN + NONCE_LEN + TAG_LEN)
#define SRC_OFF 6 /* inner header bytes 6..9: source node, u32 BE (draft 10.2, SEC-027) */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
} PilsKey;

static void put_u64_be(unsigned char *p, unsigned long long v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static unsigned long long get_u64_be(const unsigned char *p) {
    unsigned long long v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static PyObject *openssl_error(const char *what) {
    PyErr_Format(PyExc_RuntimeError, "OpenSSL %s failed", what);
    return NULL;
}

static int PilsKey_init(PilsKey *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"key", NULL};
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*:PilsKey", kwlist, &key)) {
        return -1;
    }
    if (key.len != KEY_LEN) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "AES-256-GCM needs a 32-byte key");
        return -1;
    }
    if (self->enc != NULL || self->dec != NULL) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_RuntimeError, "PilsKey is already initialised");
        return -1;
    }
    self->enc = EVP_CIPHER_CTX_new();
    self->dec = EVP_CIPHER_CTX_new();
    int ok = self->enc != NULL && self->dec != NULL &&
             EVP_EncryptInit_ex(self->enc, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(self->enc, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
             EVP_EncryptInit_ex(self->enc, NULL, NULL, (const unsigned char *)key.buf, NULL) == 1 &&
             EVP_DecryptInit_ex(self->dec, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(self->dec, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
             EVP_DecryptInit_ex(self->dec, NULL, NULL, (const unsigned char *)key.buf, NULL) == 1;
    PyBuffer_Release(&key); /* the key bytes themselves are the caller's to wipe (SessionCipher does) */
    if (!ok) {
        EVP_CIPHER_CTX_free(self->enc); /* frees and cleanses the key schedule; NULL is allowed */
        EVP_CIPHER_CTX_free(self->dec);
        self->enc = self->dec = NULL;
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL AES-256-GCM set-up failed");
        return -1;
    }
    return 0;
}

static void PilsKey_dealloc(PilsKey *self) {
    EVP_CIPHER_CTX_free(self->enc); /* EVP_CIPHER_CTX_free cleanses the expanded key before freeing */
    EVP_CIPHER_CTX_free(self->dec);
    self->enc = self->dec = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(PilsKey *self) {
    if (self->enc == NULL || self->dec == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "PilsKey is not initialised");
        return 0;
    }
    return 1;
}

/* A bytes argument of exactly `len` bytes, or an error naming it. */
static const unsigned char *exact_bytes(PyObject *o, Py_ssize_t len, const char *name) {
    if (!PyBytes_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", name, Py_TYPE(o)->tp_name);
        return NULL;
    }
    if (PyBytes_GET_SIZE(o) != len) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes", name, len);
        return NULL;
    }
    return (const unsigned char *)PyBytes_AS_STRING(o);
}

/* seal(head, prefix, counter, packet) -> frame */
static PyObject *PilsKey_seal(PilsKey *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "seal() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!ready(self)) {
        return NULL;
    }
    const unsigned char *head = exact_bytes(args[0], HEAD_LEN, "head");
    if (head == NULL) {
        return NULL;
    }
    const unsigned char *prefix = exact_bytes(args[1], PREFIX_LEN, "prefix");
    if (prefix == NULL) {
        return NULL;
    }
    if (!PyLong_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "counter must be int, not %.100s", Py_TYPE(args[2])->tp_name);
        return NULL;
    }
    unsigned long long counter = PyLong_AsUnsignedLongLong(args[2]);
    if (counter == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "counter must be in 0..2**64-1");
        return NULL;
    }
    Py_buffer pt;
    if (PyObject_GetBuffer(args[3], &pt, PyBUF_ND | PyBUF_FORMAT) != 0) {
        return NULL; /* TypeError / BufferError for anything that is not a C-contiguous buffer */
    }
    /* A buffer of bytes only, as AESGCM.encrypt takes on the pure path: array('i'), memoryview.cast('d'),
     * ctypes arrays and the like are refused there with TypeError, so they are here. */
    if (pt.format != NULL && strcmp(pt.format, "B") != 0 && strcmp(pt.format, "c") != 0) {
        PyErr_Format(PyExc_TypeError, "packet must be a buffer of bytes, not format '%.20s'", pt.format);
        PyBuffer_Release(&pt);
        return NULL;
    }
    if (pt.len > INT_MAX - FRAME_MIN) {
        PyBuffer_Release(&pt);
        PyErr_SetString(PyExc_ValueError, "packet too large to seal");
        return NULL;
    }
    PyObject *frame = PyBytes_FromStringAndSize(NULL, FRAME_MIN + pt.len);
    if (frame == NULL) {
        PyBuffer_Release(&pt);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    memcpy(out, head, HEAD_LEN);
    unsigned char *nonce = out + HEAD_LEN;
    memcpy(nonce, prefix, PREFIX_LEN);
    put_u64_be(nonce + PREFIX_LEN, counter);
    unsigned char *ct = nonce + NONCE_LEN;
    int outl = 0, finl = 0;
    int ok = EVP_EncryptInit_ex(self->enc, NULL, NULL, NULL, nonce) == 1 &&
             EVP_EncryptUpdate(self->enc, NULL, &outl, head + 4, 4) == 1 &&
             EVP_EncryptUpdate(self->enc, ct, &outl, (const unsigned char *)pt.buf, (int)pt.len) == 1 &&
             EVP_EncryptFinal_ex(self->enc, ct + outl, &finl) == 1 && (Py_ssize_t)(outl + finl) == pt.len &&
             EVP_CIPHER_CTX_ctrl(self->enc, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + pt.len) == 1;
    PyBuffer_Release(&pt);
    if (!ok) {
        Py_DECREF(frame);
        return openssl_error("AES-256-GCM encrypt");
    }
    return frame;
}

/* Decrypt `ct` (ciphertext || tag, ct_len >= TAG_LEN) with `nonce` and AAD `aad` (4 bytes), then check the
 * inner source against `aad`.  The plaintext, or NULL with no exception set when it does not open. */
static PyObject *open_checked(PilsKey *self, const unsigned char *nonce, const unsigned char *ct, Py_ssize_t ct_len,
                              const unsigned char *aad) {
    Py_ssize_t pt_len = ct_len - TAG_LEN;
    if (pt_len < SRC_OFF + 4 || pt_len > INT_MAX) {
        return NULL; /* too short to carry an inner source equal to the sender, or too long for EVP */
    }
    PyObject *plain = PyBytes_FromStringAndSize(NULL, pt_len);
    if (plain == NULL) {
        return NULL; /* MemoryError is set */
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(plain);
    int outl = 0, finl = 0;
    int ok = EVP_DecryptInit_ex(self->dec, NULL, NULL, NULL, nonce) == 1 &&
             EVP_DecryptUpdate(self->dec, NULL, &outl, aad, 4) == 1 &&
             EVP_DecryptUpdate(self->dec, out, &outl, ct, (int)pt_len) == 1 &&
             EVP_CIPHER_CTX_ctrl(self->dec, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(ct + pt_len)) == 1 &&
             EVP_DecryptFinal_ex(self->dec, out + outl, &finl) == 1 && (Py_ssize_t)(outl + finl) == pt_len;
    if (!ok || memcmp(out + SRC_OFF, aad, 4) != 0) {
        OPENSSL_cleanse(out, (size_t)pt_len); /* never leave unauthenticated plaintext behind */
        Py_DECREF(plain);
        return NULL;
    }
    return plain;
}

/* `expected` as a u64, or 0 with *fits = 0 when it is not an int in 0..2^64-1 (then no frame matches). */
static unsigned long long expected_counter(PyObject *o, int *fits) {
    *fits = 0;
    if (!PyLong_Check(o)) {
        return 0;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *fits = 1;
    return v;
}

static PyObject *none_or_error(PyObject *plain) {
    if (plain != NULL) {
        return plain;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* open_frame(frame, head, prefix, expected) -> plaintext | None */
static PyObject *PilsKey_open_frame(PilsKey *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "open_frame() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!ready(self)) {
        return NULL;
    }
    PyObject *frame = args[0], *head = args[1], *prefix = args[2];
    if (!PyBytes_Check(frame) || !PyBytes_Check(head) || !PyBytes_Check(prefix) ||
        PyBytes_GET_SIZE(head) != HEAD_LEN || PyBytes_GET_SIZE(prefix) != PREFIX_LEN ||
        PyBytes_GET_SIZE(frame) < FRAME_MIN) {
        Py_RETURN_NONE;
    }
    int fits;
    unsigned long long expected = expected_counter(args[3], &fits);
    const unsigned char *f = (const unsigned char *)PyBytes_AS_STRING(frame);
    const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(head);
    if (!fits || memcmp(f, h, HEAD_LEN) != 0 || memcmp(f + HEAD_LEN, PyBytes_AS_STRING(prefix), PREFIX_LEN) != 0 ||
        get_u64_be(f + HEAD_LEN + PREFIX_LEN) != expected) {
        Py_RETURN_NONE;
    }
    return none_or_error(
        open_checked(self, f + HEAD_LEN, f + HEAD_LEN + NONCE_LEN, PyBytes_GET_SIZE(frame) - HEAD_LEN - NONCE_LEN, h + 4));
}

/* open(nonce, ciphertext, aad, prefix, expected) -> plaintext | None */
static PyObject *PilsKey_open(PilsKey *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "open() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!ready(self)) {
        return NULL;
    }
    PyObject *nonce = args[0], *ct = args[1], *aad = args[2], *prefix = args[3];
    if (!PyBytes_Check(nonce) || !PyBytes_Check(ct) || !PyBytes_Check(aad) || !PyBytes_Check(prefix) ||
        PyBytes_GET_SIZE(nonce) != NONCE_LEN || PyBytes_GET_SIZE(aad) != 4 || PyBytes_GET_SIZE(prefix) != PREFIX_LEN ||
        PyBytes_GET_SIZE(ct) < TAG_LEN) {
        Py_RETURN_NONE;
    }
    int fits;
    unsigned long long expected = expected_counter(args[4], &fits);
    const unsigned char *n = (const unsigned char *)PyBytes_AS_STRING(nonce);
    if (!fits || memcmp(n, PyBytes_AS_STRING(prefix), PREFIX_LEN) != 0 || get_u64_be(n + PREFIX_LEN) != expected) {
        Py_RETURN_NONE;
    }
    return none_or_error(open_checked(self, n, (const unsigned char *)PyBytes_AS_STRING(ct), PyBytes_GET_SIZE(ct),
                                      (const unsigned char *)PyBytes_AS_STRING(aad)));
}

static PyMethodDef PilsKey_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))PilsKey_seal, METH_FASTCALL,
     "seal(head, prefix, counter, packet) -> the whole PILS frame (draft 7.2)"},
    {"open_frame", (PyCFunction)(void (*)(void))PilsKey_open_frame, METH_FASTCALL,
     "open_frame(frame, head, prefix, expected) -> plaintext, or None when the in-order fast path does not apply"},
    {"open", (PyCFunction)(void (*)(void))PilsKey_open, METH_FASTCALL,
     "open(nonce, ciphertext, aad, prefix, expected) -> plaintext, or None when the fast path does not apply"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PilsKeyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pilot_proto.tunnel._pilsc.PilsKey",
    .tp_doc = "AES-256-GCM contexts for one PILS session key (optional accelerator of pilot_proto.tunnel.aead)",
    .tp_basicsize = sizeof(PilsKey),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)PilsKey_init,
    .tp_dealloc = (destructor)PilsKey_dealloc,
    .tp_methods = PilsKey_methods,
};

static struct PyModuleDef pilsc_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_pilsc",
    .m_doc = "Optional C accelerator for PILS seal/open over OpenSSL EVP AES-256-GCM (pilot_proto.tunnel.aead)",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__pilsc(void) {
    if (PyType_Ready(&PilsKeyType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&pilsc_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&PilsKeyType);
    if (PyModule_AddObject(m, "PilsKey", (PyObject *)&PilsKeyType) < 0) {
        Py_DECREF(&PilsKeyType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "OPENSSL_VERSION", OpenSSL_version(OPENSSL_VERSION)) < 0 ||
        PyModule_AddStringConstant(m, "SOURCE_SHA256", PILSC_SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
