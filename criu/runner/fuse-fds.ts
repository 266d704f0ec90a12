// Runs argv through bash after closing every descriptor it inherited on /dev/fuse.
// libfuse opens /dev/fuse without O_CLOEXEC, so every child of the process serving the
// Fusion mount inherits the server's end of the mount. A long-lived child holding it
// (criu, unshare) keeps the mount's connection open after the server dies: every access
// to the mount then blocks forever instead of failing with ENOTCONN. That is what a
// kill -9 of the agent in the middle of a dump did (test/criu/engine/agent-crash.test.ts):
// criu hung in its image writes and the task stayed frozen. The descriptors to keep
// (criu's --inherit-fd pipes) are not /dev/fuse, so only those are closed. `-ef` is bash's
// own test (same device and inode), so no process is started per descriptor.
export function withoutFuseFds(argv: string[]): string[] {
  return [
    "bash",
    "-c",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion
    'for p in /proc/$$/fd/*; do n=${p##*/}; [ "$p" -ef /dev/fuse ] && exec {n}>&-; done; exec "$@"',
    "snapctl-exec",
    ...argv,
  ];
}
