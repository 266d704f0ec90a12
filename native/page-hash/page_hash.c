// hashPages(data, pageBytes, seed, out): the XXH3-128 (seeded) of each page of `data`, its
// last page maybe shorter, written to `out` as 16 bytes per page in xxHash's canonical
// (big-endian) form. One call per batch instead of one per 4 KiB page (hash-wasm's call,
// copy into wasm memory and digest per page cost more than the hash: see
// bench/probes/hash-speed.ts). `data` and `out` may be any typed arrays, SharedArrayBuffer-
// backed ones included; the hash is libxxhash's (Debian's libxxhash-dev), inlined.
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <node_api.h>
#include <stdint.h>

#define CHECK(call)                                   \
  do {                                                \
    if ((call) != napi_ok) return NULL;               \
  } while (0)

// The bytes a typed array views (its length counted in bytes, whatever its element size).
static napi_status bytes_of(napi_env env, napi_value value, uint8_t** data, size_t* length) {
  bool is;
  napi_status s = napi_is_typedarray(env, value, &is);
  if (s != napi_ok) return s;
  if (!is) return napi_invalid_arg;
  napi_typedarray_type type;
  size_t count, offset;
  void* base;
  napi_value ab;
  s = napi_get_typedarray_info(env, value, &type, &count, &base, &ab, &offset);
  if (s != napi_ok) return s;
  size_t unit = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: unit = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: unit = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: unit = 8; break;
    default: break;
  }
  *data = base;
  *length = count * unit;
  return napi_ok;
}

static napi_value hash_pages(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) {
    napi_throw_type_error(env, NULL, "hashPages(data, pageBytes, seed, out) takes 4 arguments");
    return NULL;
  }
  uint8_t *data, *out;
  size_t length, outLength;
  if (bytes_of(env, argv[0], &data, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "hashPages: data must be a typed array (a Buffer, say)");
    return NULL;
  }
  uint32_t page;
  if (napi_get_value_uint32(env, argv[1], &page) != napi_ok || page == 0) {
    napi_throw_range_error(env, NULL, "hashPages: pageBytes must be a positive integer");
    return NULL;
  }
  uint64_t seed;
  bool lossless;
  if (napi_get_value_bigint_uint64(env, argv[2], &seed, &lossless) != napi_ok || !lossless) {
    napi_throw_type_error(env, NULL, "hashPages: seed must be a BigInt in [0, 2^64)");
    return NULL;
  }
  if (bytes_of(env, argv[3], &out, &outLength) != napi_ok) {
    napi_throw_type_error(env, NULL, "hashPages: out must be a typed array (a Buffer, say)");
    return NULL;
  }
  size_t pages = length / page + (length % page != 0);
  if (outLength < pages * 16) {
    napi_throw_range_error(env, NULL, "hashPages: out must hold 16 bytes per page of data");
    return NULL;
  }
  for (size_t p = 0; p < pages; p++) {
    size_t at = p * (size_t)page;
    size_t n = length - at < page ? length - at : page;
    XXH128_canonicalFromHash((XXH128_canonical_t*)(out + p * 16),
                             XXH3_128bits_withSeed(data + at, n, seed));
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "hashPages", NAPI_AUTO_LENGTH, hash_pages, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "hashPages", fn) != napi_ok) return NULL;
  return exports;
}
