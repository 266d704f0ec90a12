import type { S3Client } from "@aws-sdk/client-s3";
import { listObjects } from "../s3/s3-util.js";
import { hashFromKey } from "./chunk-format.js";

// The set of chunks known to be in the store: seeded by one paginated listing of the
// chunk prefix (memoized), then kept current as this process uploads or deletes.
// Memory: about 100 bytes per chunk (40,000 chunks ≈ 4 MB for 10 GiB at 256 KiB).
export class ChunkIndex {
  private readonly known = new Set<string>();
  private seeding?: Promise<void>;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
  ) {}

  // Lists the chunk prefix once; later calls share the first listing. A failed listing
  // is forgotten so that the next call retries it.
  ready(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.seeding) {
      this.seeding = this.seed(options.signal);
      this.seeding.catch(() => {
        this.seeding = undefined;
      });
    }
    return this.seeding;
  }

  has(hash: string): boolean {
    return this.known.has(hash);
  }

  add(hash: string): void {
    this.known.add(hash);
  }

  delete(hash: string): void {
    this.known.delete(hash);
  }

  get size(): number {
    return this.known.size;
  }

  private async seed(signal?: AbortSignal): Promise<void> {
    for await (const object of listObjects(this.client, this.bucket, this.prefix, { signal })) {
      const hash = hashFromKey(this.prefix, object.key);
      if (hash) this.known.add(hash);
    }
  }
}
