{
  "targets": [{
    "target_name": "page_hash",
    "sources": ["page_hash.c"],
    "cflags": ["-O3", "-Wall", "-Wextra"],
    "xcode_settings": {"OTHER_CFLAGS": ["-O3", "-Wall", "-Wextra"]}
  }]
}
