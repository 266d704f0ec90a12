import { AgentError } from "../errors.js";

export interface WorkDirLocation {
  bucket: string;
  // Key prefix without a trailing "/" ("" for the bucket's root).
  prefix: string;
}

const S3_URL = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/;

// s3://bucket/some/prefix/ -> { bucket, prefix: "some/prefix" }.
export function parseWorkDir(url: string): WorkDirLocation {
  const match = S3_URL.exec(url);
  if (!match)
    throw new AgentError(
      "AGENT_INVALID_OPTION",
      `Work dir "${url}" is not an s3://bucket/prefix URL with a valid bucket name`,
    );
  const prefix = (match[2] ?? "").replace(/\/+$/, "");
  if (prefix.split("/").some((part) => part === "." || part === ".."))
    throw new AgentError("AGENT_INVALID_OPTION", `Work dir "${url}" has a "." or ".." path segment`);
  return { bucket: match[1] as string, prefix };
}

// Where the work dir appears on a Fusion mount.
export function workDirOnMount(mountpoint: string, location: WorkDirLocation): string {
  return `${mountpoint}/s3/${location.bucket}${location.prefix ? `/${location.prefix}` : ""}`;
}
