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
 *   seal_packet(head, prefix, counter, packet) -> bytes | None
 *       encode_packet (draft 6: the 34-byte header, its CRC-32) and seal in one call: the same frame as
 *       seal(head, prefix, counter, encode_packet(packet)).  None (nothing sealed, no error) unless
 *       `packet` is a 12-item tuple whose fields are ints in their ranges (an int subclass only where
 *       encode_packet would read its value), whose src/dst are 2-tuples, whose payload is `bytes` of at
 *       most 65535 bytes and whose source node is the sender in `head`; the Python layer then runs
 *       encode_packet and its own checks, which raise or encode.
 *
 *   open_packet(frame, head, prefix, expected) -> Packet | None
 *       open_frame followed by decode_packet(..., check_version=False): the decoded Packet (types
 *       registered with set_packet_types) if the frame opens as open_frame would AND its inner packet
 *       is exactly 34 + payload length bytes with a correct CRC-32; None in every other case, so the
 *       Python path reports whatever is wrong exactly as without this module.  Consecutive packets with
 *       the same source (destination) address share one Addr object.
 *
 *   crc32(data, value=0), crc32_table(data, value=0) -> int
 *       zlib-compatible CRC-32 (IEEE 802.3) as used by both calls above: VPCLMULQDQ folding on x86-64
 *       CPUs with AVX-512 (unless PILOT_PROTO_NO_AVX512 is set at import), PCLMULQDQ folding on the
 *       others that have it, a slicing-by-8 table otherwise (CRC32_IMPLEMENTATION says which); the
 *       table version is exported so tests check every path against zlib.
 *
 * Counters, replay windows, prefixes and every error stay in Python (pilot_proto/tunnel/aead.py).
 * The GIL is held throughout, so one context is never used by two threads at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
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

/* ---- CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, zlib's crc32) for the packet header (draft 6.5) ---- */

static uint32_t crc_table[8][256];

static void crc_table_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
}

/* The register form (no pre/post inversion): c is ~crc on entry and exit. */
static uint32_t crc_table_update(uint32_t c, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
            crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
            crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) {
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    }
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PILSC_HAVE_CLMUL 1

/* Carry-less multiplication folding (Intel, "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
 * 2009) for the bit-reflected IEEE polynomial.  Folding a 128-bit lane forward by D bits multiplies its low half
 * by x^(D+32) mod P and its high half by x^(D-32) mod P (both bit-reflected and shifted left once, as the
 * constants below are; tools: any polynomial arithmetic, e.g. Python ints), then a 128 -> 64 -> 32-bit reduction
 * and a Barrett step give the remainder.  Every path is checked against zlib at every length up to 1100 and at
 * packet sizes (tests/test_tunnel_pils_packet.py). */
#define K512_LO 0x154442bd4LL  /* x^544 */
#define K512_HI 0x1c6e41596LL  /* x^480 */
#define K128_LO 0x1751997d0LL  /* x^160 */
#define K128_HI 0x0ccaa009eLL  /* x^96 */
#define K64 0x163cd6124LL      /* x^64 */
#define K2048_LO 0x11542778aLL /* x^2080 */
#define K2048_HI 0x1322d1430LL /* x^2016 */

/* Four 128-bit lanes (the state of 64 consecutive bytes) folded over the rest of p[0..n), n rounded down to 16,
 * and reduced: the register form of the CRC. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul_lanes(__m128i x0, __m128i x1, __m128i x2,
                                                                         __m128i x3, const unsigned char *p,
                                                                         size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(K512_HI, K512_LO);
    const __m128i k3k4 = _mm_set_epi64x(K128_HI, K128_LO);
    const __m128i k5 = _mm_set_epi64x(0, K64);
    const __m128i poly = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL); /* floor(x^64 / P), P (reflected) */
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
    while (n >= 64) {
#define FOLD(x, off)                                                                                          \
    do {                                                                                                      \
        __m128i lo_ = _mm_clmulepi64_si128(x, k1k2, 0x00);                                                  \
        __m128i hi_ = _mm_clmulepi64_si128(x, k1k2, 0x11);                                                  \
        x = _mm_xor_si128(_mm_xor_si128(lo_, hi_), _mm_loadu_si128((const __m128i *)(const void *)(p + off))); \
    } while (0)
        FOLD(x0, 0);
        FOLD(x1, 16);
        FOLD(x2, 32);
        FOLD(x3, 48);
#undef FOLD
        p += 64;
        n -= 64;
    }
#define FOLD1(x, y)                                                                                           \
    _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k3k4, 0x00), _mm_clmulepi64_si128(x, k3k4, 0x11)), y)
    x0 = FOLD1(x0, x1);
    x0 = FOLD1(x0, x2);
    x0 = FOLD1(x0, x3);
    while (n >= 16) {
        x0 = FOLD1(x0, _mm_loadu_si128((const __m128i *)(const void *)p));
        p += 16;
        n -= 16;
    }
#undef FOLD1
    /* 128 -> 64 bits */
    __m128i t = _mm_clmulepi64_si128(x0, k3k4, 0x10);
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), t);
    /* 64 -> 32 bits */
    t = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), k5, 0x00);
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 4), t);
    /* Barrett reduction to the 32-bit remainder */
    t = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, mask32), poly, 0x00);
    x0 = _mm_xor_si128(x0, t);
    return (uint32_t)_mm_extract_epi32(x0, 1);
}

/* PCLMULQDQ on 128-bit lanes: needs n >= 64; folds n rounded down to 16, returns the register form like
 * crc_table_update (the caller finishes the n % 16 tail). */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul_update(uint32_t c, const unsigned char *p,
                                                                          size_t n) {
    __m128i x0 = _mm_loadu_si128((const __m128i *)(const void *)(p + 0));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)c));
    return crc_clmul_lanes(x0, x1, x2, x3, p + 64, n - 64);
}

/* VPCLMULQDQ on four 512-bit registers (16 lanes, 256 bytes a round, folded 2048 bits forward), then the
 * registers folded into one (512 bits apart) whose four lanes go on as crc_clmul_update's.  Needs n >= 256. */
__attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.1"))) static uint32_t crc_vclmul_update(
    uint32_t c, const unsigned char *p, size_t n) {
    const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(K2048_HI, K2048_LO));
    const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(K512_HI, K512_LO));
    __m512i x0 = _mm512_loadu_si512((const void *)(p + 0));
    __m512i x1 = _mm512_loadu_si512((const void *)(p + 64));
    __m512i x2 = _mm512_loadu_si512((const void *)(p + 128));
    __m512i x3 = _mm512_loadu_si512((const void *)(p + 192));
    x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)c)));
    p += 256;
    n -= 256;
#define VFOLD(x, k, y) \
    _mm512_xor_si512(_mm512_xor_si512(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11)), y)
    while (n >= 256) {
        x0 = VFOLD(x0, k2048, _mm512_loadu_si512((const void *)(p + 0)));
        x1 = VFOLD(x1, k2048, _mm512_loadu_si512((const void *)(p + 64)));
        x2 = VFOLD(x2, k2048, _mm512_loadu_si512((const void *)(p + 128)));
        x3 = VFOLD(x3, k2048, _mm512_loadu_si512((const void *)(p + 192)));
        p += 256;
        n -= 256;
    }
    x0 = VFOLD(x0, k512, x1);
    x0 = VFOLD(x0, k512, x2);
    x0 = VFOLD(x0, k512, x3);
#undef VFOLD
    return crc_clmul_lanes(_mm512_extracti32x4_epi32(x0, 0), _mm512_extracti32x4_epi32(x0, 1),
                           _mm512_extracti32x4_epi32(x0, 2), _mm512_extracti32x4_epi32(x0, 3), p, n);
}
#endif

static int crc_use_clmul = 0;  /* PCLMULQDQ and SSE4.1 */
static int crc_use_vclmul = 0; /* and VPCLMULQDQ with AVX-512 */

/* zlib's crc32(crc, p, n): pre- and post-inverted. */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    uint32_t c = ~crc;
#ifdef PILSC_HAVE_CLMUL
    if (crc_use_clmul && n >= 64) {
        size_t folded = n & ~(size_t)15;
        c = crc_use_vclmul && n >= 256 ? crc_vclmul_update(c, p, folded) : crc_clmul_update(c, p, folded);
        p += folded;
        n -= folded;
    }
#endif
    return ~crc_table_update(c, p, n);
}

static PyObject *crc_entry(PyObject *const *args, Py_ssize_t nargs, int table_only) {
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "crc32() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    unsigned long value = 0;
    if (nargs == 2) {
        if (!PyLong_Check(args[1])) {
            PyErr_SetString(PyExc_TypeError, "value must be int");
            return NULL;
        }
        value = PyLong_AsUnsignedLongMask(args[1]);
        if (value == (unsigned long)-1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_buffer b;
    if (PyObject_GetBuffer(args[0], &b, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    uint32_t c = (uint32_t)value;
    if (table_only) {
        c = ~crc_table_update(~c, (const unsigned char *)b.buf, (size_t)b.len);
    } else {
        c = crc32_update(c, (const unsigned char *)b.buf, (size_t)b.len);
    }
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(c);
}

static PyObject *pilsc_crc32(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return crc_entry(args, nargs, 0);
}

static PyObject *pilsc_crc32_table(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return crc_entry(args, nargs, 1);
}

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
    /* The source and destination Addr of the last packet open_packet built, and their 6 wire bytes: a session's
     * packets carry the same two addresses, and an Addr is immutable, so the next packet shares them. */
    PyObject *last_src, *last_dst;
    unsigned char last_src_b[6], last_dst_b[6];
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
    Py_CLEAR(self->last_src);
    Py_CLEAR(self->last_dst);
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

/* The arguments seal() and seal_packet() share: head (b"PILS" + sender, 8 bytes), prefix (4 bytes), counter
 * (0..2^64-1); 0 with TypeError / ValueError set when one is wrong. */
static int seal_args(PilsKey *self, PyObject *const *args, Py_ssize_t nargs, const char *name,
                     const unsigned char **head, const unsigned char **prefix, unsigned long long *counter) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "%s() takes 4 arguments (%zd given)", name, nargs);
        return 0;
    }
    if (!ready(self)) {
        return 0;
    }
    *head = exact_bytes(args[0], HEAD_LEN, "head");
    if (*head == NULL) {
        return 0;
    }
    *prefix = exact_bytes(args[1], PREFIX_LEN, "prefix");
    if (*prefix == NULL) {
        return 0;
    }
    if (!PyLong_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "counter must be int, not %.100s", Py_TYPE(args[2])->tp_name);
        return 0;
    }
    *counter = PyLong_AsUnsignedLongLong(args[2]);
    if (*counter == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "counter must be in 0..2**64-1");
        return 0;
    }
    return 1;
}

/* A new frame for pt_len plaintext bytes with its cleartext part written (head || prefix || counter BE);
 * *ct is where the ciphertext (then the tag) goes. */
static PyObject *new_frame(const unsigned char *head, const unsigned char *prefix, unsigned long long counter,
                           Py_ssize_t pt_len, unsigned char **ct) {
    PyObject *frame = PyBytes_FromStringAndSize(NULL, FRAME_MIN + pt_len);
    if (frame == NULL) {
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    memcpy(out, head, HEAD_LEN);
    memcpy(out + HEAD_LEN, prefix, PREFIX_LEN);
    put_u64_be(out + HEAD_LEN + PREFIX_LEN, counter);
    *ct = out + HEAD_LEN + NONCE_LEN;
    return frame;
}

/* Encrypt pt_len bytes from pt into the frame's ct (pt may be ct itself: in place) with the frame's nonce and
 * AAD = the sender (head[4:8]), and append the tag: the frame, or NULL (frame released) on an OpenSSL failure. */
static PyObject *seal_frame(PilsKey *self, PyObject *frame, const unsigned char *head, unsigned char *ct,
                            const unsigned char *pt, Py_ssize_t pt_len) {
    const unsigned char *nonce = ct - NONCE_LEN;
    int outl = 0, finl = 0;
    int ok = EVP_EncryptInit_ex(self->enc, NULL, NULL, NULL, nonce) == 1 &&
             EVP_EncryptUpdate(self->enc, NULL, &outl, head + 4, 4) == 1 &&
             EVP_EncryptUpdate(self->enc, ct, &outl, pt, (int)pt_len) == 1 &&
             EVP_EncryptFinal_ex(self->enc, ct + outl, &finl) == 1 && (Py_ssize_t)(outl + finl) == pt_len &&
             EVP_CIPHER_CTX_ctrl(self->enc, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + pt_len) == 1;
    if (!ok) {
        Py_DECREF(frame);
        return openssl_error("AES-256-GCM encrypt");
    }
    return frame;
}

/* seal(head, prefix, counter, packet) -> frame */
static PyObject *PilsKey_seal(PilsKey *self, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *head, *prefix;
    unsigned long long counter;
    if (!seal_args(self, args, nargs, "seal", &head, &prefix, &counter)) {
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
    unsigned char *ct;
    PyObject *frame = new_frame(head, prefix, counter, pt.len, &ct);
    if (frame != NULL) {
        frame = seal_frame(self, frame, head, ct, (const unsigned char *)pt.buf, pt.len);
    }
    PyBuffer_Release(&pt);
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

/* The frame (args[0]) of open_frame / open_packet when it is `bytes` of min_len..max_len bytes whose head is
 * args[1] (b"PILS" + sender), whose nonce is args[2] (prefix) || args[3] (expected counter): the next frame in
 * order; else NULL with no exception (the fast path does not apply; the Python path decides). */
static const unsigned char *in_order_frame(PyObject *const *args, Py_ssize_t min_len, Py_ssize_t max_len) {
    PyObject *frame = args[0], *head = args[1], *prefix = args[2];
    if (!PyBytes_Check(frame) || !PyBytes_Check(head) || !PyBytes_Check(prefix) ||
        PyBytes_GET_SIZE(head) != HEAD_LEN || PyBytes_GET_SIZE(prefix) != PREFIX_LEN ||
        PyBytes_GET_SIZE(frame) < min_len || PyBytes_GET_SIZE(frame) > max_len) {
        return NULL;
    }
    int fits;
    unsigned long long expected = expected_counter(args[3], &fits);
    const unsigned char *f = (const unsigned char *)PyBytes_AS_STRING(frame);
    if (!fits || memcmp(f, PyBytes_AS_STRING(head), HEAD_LEN) != 0 ||
        memcmp(f + HEAD_LEN, PyBytes_AS_STRING(prefix), PREFIX_LEN) != 0 ||
        get_u64_be(f + HEAD_LEN + PREFIX_LEN) != expected) {
        return NULL;
    }
    return f;
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
    const unsigned char *f = in_order_frame(args, FRAME_MIN, PY_SSIZE_T_MAX);
    if (f == NULL) {
        Py_RETURN_NONE;
    }
    return none_or_error(open_checked(self, f + HEAD_LEN, f + HEAD_LEN + NONCE_LEN,
                                      PyBytes_GET_SIZE(args[0]) - HEAD_LEN - NONCE_LEN, f + 4));
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

/* ---- the packet header (draft 6.1-6.5) fused with seal / open ---------------------------------------------- */

#define HDR_LEN 34
#define CRC_OFF 30
#define MAX_PAYLOAD 0xFFFF

static PyTypeObject *packet_type = NULL; /* pilot_proto.wire.header.Packet, set by set_packet_types */
static PyTypeObject *addr_type = NULL;   /* pilot_proto.wire.address.Addr */
static destructor python_class_dealloc = NULL; /* tp_dealloc of classes defined in Python (set_packet_types) */

/* How an int subclass may differ from its value in encode_packet: struct.pack reads any int's stored value, but
 * flags go through int() first and version through `|`, `<<` and `>>`. */
enum { PLAIN = 0, VIA_INT = 1, VIA_OPS = 2 };

/* An int field in 0..max as encode_packet would take it, or -1 (no exception left set) when it is anything else:
 * an int subclass that redefines what `how` applies to it is left to the Python path. */
static long long field(PyObject *o, unsigned long long max, int how) {
    if (!PyLong_CheckExact(o)) {
        if (!PyLong_Check(o)) {
            return -1;
        }
        PyNumberMethods *nb = Py_TYPE(o)->tp_as_number, *base = PyLong_Type.tp_as_number;
        if ((how == VIA_INT && (nb == NULL || nb->nb_int != base->nb_int)) ||
            (how == VIA_OPS && (nb == NULL || nb->nb_or != base->nb_or || nb->nb_lshift != base->nb_lshift ||
                                nb->nb_rshift != base->nb_rshift))) {
            return -1;
        }
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0 || v < 0 || (unsigned long long)v > max) {
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        }
        return -1;
    }
    return v;
}

static void put_u16(unsigned char *p, unsigned long v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put_u32(unsigned char *p, unsigned long v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static unsigned long get_u16(const unsigned char *p) { return (unsigned long)p[0] << 8 | p[1]; }

static unsigned long get_u32(const unsigned char *p) {
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

/* A tuple of n items that unpacks as one (encode_packet unpacks the packet and both addresses): a tuple
 * subclass such as a NamedTuple qualifies unless it redefines iteration. */
static int plain_tuple(PyObject *o, Py_ssize_t n) {
    return PyTuple_Check(o) && PyTuple_GET_SIZE(o) == n && Py_TYPE(o)->tp_iter == PyTuple_Type.tp_iter;
}

/* The 34-byte header of `pkt` (CRC included) into hdr, and its payload; 0 when encode_packet's fast case does
 * not hold (then the Python layer decides), 1 when encoded. */
static int encode_header(PyObject *pkt, const unsigned char *sender, unsigned char *hdr, PyObject **payload) {
    if (!plain_tuple(pkt, 12)) {
        return 0;
    }
    PyObject *src = PyTuple_GET_ITEM(pkt, 2), *dst = PyTuple_GET_ITEM(pkt, 3), *pl = PyTuple_GET_ITEM(pkt, 9);
    if (!plain_tuple(src, 2) || !plain_tuple(dst, 2) || !PyBytes_CheckExact(pl) || PyBytes_GET_SIZE(pl) > MAX_PAYLOAD) {
        return 0;
    }
    long long flags = field(PyTuple_GET_ITEM(pkt, 0), 15, VIA_INT), proto = field(PyTuple_GET_ITEM(pkt, 1), 0xFF, PLAIN);
    long long sn = field(PyTuple_GET_ITEM(src, 0), 0xFFFF, PLAIN), snode = field(PyTuple_GET_ITEM(src, 1), 0xFFFFFFFF, PLAIN);
    long long dn = field(PyTuple_GET_ITEM(dst, 0), 0xFFFF, PLAIN), dnode = field(PyTuple_GET_ITEM(dst, 1), 0xFFFFFFFF, PLAIN);
    long long sp = field(PyTuple_GET_ITEM(pkt, 4), 0xFFFF, PLAIN), dp = field(PyTuple_GET_ITEM(pkt, 5), 0xFFFF, PLAIN);
    long long seq = field(PyTuple_GET_ITEM(pkt, 6), 0xFFFFFFFF, PLAIN);
    long long ack = field(PyTuple_GET_ITEM(pkt, 7), 0xFFFFFFFF, PLAIN);
    long long win = field(PyTuple_GET_ITEM(pkt, 8), 0xFFFF, PLAIN), version = field(PyTuple_GET_ITEM(pkt, 10), 15, VIA_OPS);
    if ((flags | proto | sn | snode | dn | dnode | sp | dp | seq | ack | win | version) < 0 ||
        (unsigned long)snode != get_u32(sender)) {
        return 0; /* a field encode_packet refuses (or converts), or a source node that is not ours (SEC-027) */
    }
    Py_ssize_t n = PyBytes_GET_SIZE(pl);
    hdr[0] = (unsigned char)(version << 4 | flags);
    hdr[1] = (unsigned char)proto;
    put_u16(hdr + 2, (unsigned long)n);
    put_u16(hdr + 4, (unsigned long)sn);
    put_u32(hdr + 6, (unsigned long)snode);
    put_u16(hdr + 10, (unsigned long)dn);
    put_u32(hdr + 12, (unsigned long)dnode);
    put_u16(hdr + 16, (unsigned long)sp);
    put_u16(hdr + 18, (unsigned long)dp);
    put_u32(hdr + 20, (unsigned long)seq);
    put_u32(hdr + 24, (unsigned long)ack);
    put_u16(hdr + 28, (unsigned long)win);
    memset(hdr + CRC_OFF, 0, 4);
    uint32_t crc = crc32_update(crc32_update(0, hdr, HDR_LEN), (const unsigned char *)PyBytes_AS_STRING(pl), (size_t)n);
    put_u32(hdr + CRC_OFF, crc);
    *payload = pl;
    return 1;
}

/* seal_packet(head, prefix, counter, packet) -> frame | None */
static PyObject *PilsKey_seal_packet(PilsKey *self, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *head, *prefix;
    unsigned long long counter;
    if (!seal_args(self, args, nargs, "seal_packet", &head, &prefix, &counter)) {
        return NULL;
    }
    unsigned char hdr[HDR_LEN];
    PyObject *pl = NULL;
    if (!encode_header(args[3], head + 4, hdr, &pl)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(pl), pt_len = HDR_LEN + n;
    const unsigned char *payload = (const unsigned char *)PyBytes_AS_STRING(pl);
    unsigned char *ct;
    PyObject *frame = new_frame(head, prefix, counter, pt_len, &ct);
    if (frame == NULL) {
        return NULL;
    }
    memcpy(ct, hdr, HDR_LEN); /* the inner packet laid out in the frame, then encrypted in place in one EVP call */
    memcpy(ct + HDR_LEN, payload, (size_t)n);
    return seal_frame(self, frame, head, ct, ct, pt_len);
}

static PyObject *new_tuple(PyTypeObject *tp, Py_ssize_t n) {
    PyObject *t = tp->tp_alloc(tp, n); /* what tuple.__new__(tp, ...) allocates for a tuple subclass */
    return t;
}

/* A new reference to the Addr of the 6 wire bytes at w (network u16, node u32): the cached one when it has those
 * bytes and the registered type, else a new one, which becomes the cache. */
static PyObject *addr_of(PyObject **cache, unsigned char *cached, const unsigned char *w) {
    if (*cache != NULL && Py_TYPE(*cache) == addr_type && memcmp(cached, w, 6) == 0) {
        Py_INCREF(*cache);
        return *cache;
    }
    PyObject *a = new_tuple(addr_type, 2);
    if (a == NULL) {
        return NULL;
    }
    PyObject *net = PyLong_FromUnsignedLong(get_u16(w)), *node = PyLong_FromUnsignedLong(get_u32(w + 2));
    PyTuple_SET_ITEM(a, 0, net);
    PyTuple_SET_ITEM(a, 1, node);
    if (net == NULL || node == NULL) {
        Py_DECREF(a);
        return NULL;
    }
    Py_INCREF(a);
    Py_XSETREF(*cache, a);
    memcpy(cached, w, 6);
    return a;
}

/* The Packet of a decrypted, CRC-checked inner packet (hdr: its 34 header bytes; payload: its payload). */
static PyObject *make_packet(PilsKey *self, const unsigned char *hdr, PyObject *payload) {
    PyObject *src = addr_of(&self->last_src, self->last_src_b, hdr + 4);
    PyObject *dst = src == NULL ? NULL : addr_of(&self->last_dst, self->last_dst_b, hdr + 10);
    PyObject *pkt = dst == NULL ? NULL : new_tuple(packet_type, 12);
    if (src == NULL || dst == NULL || pkt == NULL) {
        Py_XDECREF(src);
        Py_XDECREF(dst);
        Py_DECREF(payload);
        return NULL;
    }
    PyObject *items[12];
    items[0] = PyLong_FromUnsignedLong(hdr[0] & 0x0Fu);
    items[1] = PyLong_FromUnsignedLong(hdr[1]);
    items[2] = src;
    items[3] = dst;
    items[4] = PyLong_FromUnsignedLong(get_u16(hdr + 16));
    items[5] = PyLong_FromUnsignedLong(get_u16(hdr + 18));
    items[6] = PyLong_FromUnsignedLong(get_u32(hdr + 20));
    items[7] = PyLong_FromUnsignedLong(get_u32(hdr + 24));
    items[8] = PyLong_FromUnsignedLong(get_u16(hdr + 28));
    items[9] = payload;
    items[10] = PyLong_FromUnsignedLong(hdr[0] >> 4);
    items[11] = PyLong_FromUnsignedLong(get_u32(hdr + CRC_OFF));
    int failed = 0;
    for (int i = 0; i < 12; i++) {
        failed |= items[i] == NULL;
        PyTuple_SET_ITEM(pkt, i, items[i]); /* NULL items are allowed in a tuple being torn down */
    }
    if (failed) {
        Py_DECREF(pkt); /* releases src, dst, payload and every int made */
        return NULL;
    }
    return pkt;
}

/* open_packet(frame, head, prefix, expected) -> Packet | None */
static PyObject *PilsKey_open_packet(PilsKey *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "open_packet() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!ready(self)) {
        return NULL;
    }
    if (packet_type == NULL || addr_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "open_packet() needs set_packet_types() first");
        return NULL;
    }
    /* a frame whose inner packet cannot be exactly 34 + payload length bytes is not this path's */
    const unsigned char *f = in_order_frame(args, FRAME_MIN + HDR_LEN, FRAME_MIN + HDR_LEN + MAX_PAYLOAD);
    if (f == NULL) {
        Py_RETURN_NONE;
    }
    const unsigned char *h = f; /* the frame's head is `head`, byte for byte */
    const unsigned char *nonce = f + HEAD_LEN, *ct = nonce + NONCE_LEN;
    Py_ssize_t pt_len = PyBytes_GET_SIZE(args[0]) - FRAME_MIN, n = pt_len - HDR_LEN;
    /* One decrypt of the whole inner packet into the payload's own object (one EVP call keeps OpenSSL on its
     * bulk path), then the header is taken out and the payload moved down over it. */
    PyObject *payload = PyBytes_FromStringAndSize(NULL, pt_len);
    if (payload == NULL) {
        return NULL;
    }
    unsigned char lead[HDR_LEN];
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(payload);
    int l1 = 0, finl = 0;
    int ok = EVP_DecryptInit_ex(self->dec, NULL, NULL, NULL, nonce) == 1 &&
             EVP_DecryptUpdate(self->dec, NULL, &l1, h + 4, 4) == 1 &&
             EVP_DecryptUpdate(self->dec, out, &l1, ct, (int)pt_len) == 1 &&
             EVP_CIPHER_CTX_ctrl(self->dec, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(ct + pt_len)) == 1 &&
             EVP_DecryptFinal_ex(self->dec, out + l1, &finl) == 1 && (Py_ssize_t)(l1 + finl) == pt_len;
    if (ok) {
        memcpy(lead, out, HDR_LEN);
        /* open_frame's inner-source check, then decode_packet's length and CRC checks (draft 10.2, 6.2, 6.5) */
        unsigned char crc_field[4];
        memcpy(crc_field, lead + CRC_OFF, 4);
        memset(lead + CRC_OFF, 0, 4);
        ok = memcmp(lead + SRC_OFF, h + 4, 4) == 0 && (Py_ssize_t)get_u16(lead + 2) == n &&
             crc32_update(crc32_update(0, lead, HDR_LEN), out + HDR_LEN, (size_t)n) == get_u32(crc_field);
        memcpy(lead + CRC_OFF, crc_field, 4);
    }
    if (!ok) {
        OPENSSL_cleanse(out, (size_t)pt_len); /* never leave unauthenticated plaintext behind */
        OPENSSL_cleanse(lead, sizeof lead);
        Py_DECREF(payload);
        Py_RETURN_NONE;
    }
    memmove(out, out + HDR_LEN, (size_t)n);
    if (_PyBytes_Resize(&payload, n) != 0) {
        return NULL; /* payload is freed and MemoryError set */
    }
    return make_packet(self, lead, payload);
}

/* set_packet_types(Packet, Addr): the tuple subclasses open_packet builds (NamedTuples: no extra storage). */
static PyObject *pilsc_set_packet_types(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "set_packet_types() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (python_class_dealloc == NULL) { /* the dealloc of a class made by a class statement: type("", (tuple,), {}) */
        PyObject *probe = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){}", "_probe", (PyObject *)&PyTuple_Type);
        if (probe == NULL) {
            return NULL;
        }
        python_class_dealloc = ((PyTypeObject *)probe)->tp_dealloc;
        Py_DECREF(probe);
    }
    for (int i = 0; i < 2; i++) {
        PyObject *t = args[i];
        int ok = PyType_Check(t) && PyType_IsSubtype((PyTypeObject *)t, &PyTuple_Type) &&
                 ((PyTypeObject *)t)->tp_basicsize == PyTuple_Type.tp_basicsize &&
                 ((PyTypeObject *)t)->tp_itemsize == PyTuple_Type.tp_itemsize && ((PyTypeObject *)t)->tp_dictoffset == 0;
        /* only classes written in Python between it and tuple (a NamedTuple is one), recognised by the dealloc
         * every class statement gets: a C tuple subtype such as a struct sequence (os.stat_result, a heap type
         * too) has its own dealloc and item count, which the tuples built here would not match */
        for (PyTypeObject *c = (PyTypeObject *)t; ok && c != &PyTuple_Type; c = c->tp_base) {
            ok = c != NULL && (c->tp_flags & Py_TPFLAGS_HEAPTYPE) != 0 && c->tp_dealloc == python_class_dealloc;
        }
        if (!ok) {
            PyErr_SetString(PyExc_TypeError, "set_packet_types() takes two Python tuple subclasses without extra storage");
            return NULL;
        }
    }
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(packet_type, (PyTypeObject *)args[0]);
    Py_XSETREF(addr_type, (PyTypeObject *)args[1]);
    Py_RETURN_NONE;
}

static PyMethodDef PilsKey_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))PilsKey_seal, METH_FASTCALL,
     "seal(head, prefix, counter, packet) -> the whole PILS frame (draft 7.2)"},
    {"open_frame", (PyCFunction)(void (*)(void))PilsKey_open_frame, METH_FASTCALL,
     "open_frame(frame, head, prefix, expected) -> plaintext, or None when the in-order fast path does not apply"},
    {"open", (PyCFunction)(void (*)(void))PilsKey_open, METH_FASTCALL,
     "open(nonce, ciphertext, aad, prefix, expected) -> plaintext, or None when the fast path does not apply"},
    {"seal_packet", (PyCFunction)(void (*)(void))PilsKey_seal_packet, METH_FASTCALL,
     "seal_packet(head, prefix, counter, packet) -> the PILS frame of encode_packet(packet), or None"},
    {"open_packet", (PyCFunction)(void (*)(void))PilsKey_open_packet, METH_FASTCALL,
     "open_packet(frame, head, prefix, expected) -> the decoded inner Packet, or None"},
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

static PyMethodDef pilsc_functions[] = {
    {"crc32", (PyCFunction)(void (*)(void))pilsc_crc32, METH_FASTCALL,
     "crc32(data, value=0) -> zlib-compatible CRC-32 (the implementation seal_packet/open_packet use)"},
    {"crc32_table", (PyCFunction)(void (*)(void))pilsc_crc32_table, METH_FASTCALL,
     "crc32_table(data, value=0) -> the same CRC-32 by the portable table code only"},
    {"set_packet_types", (PyCFunction)(void (*)(void))pilsc_set_packet_types, METH_FASTCALL,
     "set_packet_types(Packet, Addr): the classes open_packet returns"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pilsc_module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = pilsc_functions,
    .m_name = "_pilsc",
    .m_doc = "Optional C accelerator for PILS seal/open over OpenSSL EVP AES-256-GCM (pilot_proto.tunnel.aead)",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__pilsc(void) {
    crc_table_init();
#ifdef PILSC_HAVE_CLMUL
    __builtin_cpu_init();
    crc_use_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    crc_use_vclmul = crc_use_clmul && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                     __builtin_cpu_supports("vpclmulqdq") && getenv("PILOT_PROTO_NO_AVX512") == NULL;
#endif
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
        PyModule_AddStringConstant(m, "SOURCE_SHA256", PILSC_SOURCE_SHA256) < 0 ||
        PyModule_AddStringConstant(m, "CRC32_IMPLEMENTATION",
                                   crc_use_vclmul ? "vpclmulqdq" : crc_use_clmul ? "pclmul" : "table") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
