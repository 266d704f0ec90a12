// The part of fuse-native 2.2.6 (untyped) that the driver uses.
declare module "fuse-native" {
  type Cb = (...args: unknown[]) => void;
  interface FuseOptions {
    timeout?: number | false;
    force?: boolean;
    mkdir?: boolean;
    fsname?: string;
    debug?: boolean;
    allowOther?: boolean;
    [key: string]: unknown;
  }
  class Fuse {
    constructor(mountpoint: string, ops: Record<string, (...args: never[]) => void>, options?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
  }
  export = Fuse;
}
