import { readFile } from "node:fs/promises";

export type TcpMode = "close" | "established";

// CRIU's TCP options for dump and restore. "established" locks each connection with
// nftables through the bundle's own libnftables: CRIU's default, iptables, runs an
// `iptables` binary that is not part of the bundle (and not installed here).
export function tcpArgs(mode: TcpMode): string[] {
  return mode === "established" ? ["--tcp-established", "--network-lock", "nftables"] : ["--tcp-close"];
}

// The lines CRIU before 4.2 logs when the kernel (Linux 6.16 and later) refuses
// SO_PASSCRED/SO_PASSSEC on a TCP or UDP socket: such a CRIU cannot dump any inet
// socket there, whatever the TCP mode (checkpoint-restore/criu#2705, fixed in 4.2).
const SOCKET_OPTION_REFUSED = /sockets: Can't get 1:(16|34) opt: Operation not supported/;

// Whether a failed dump's log shows that failure.
export async function socketOptionsRefused(logFile: string): Promise<boolean> {
  const log = await readFile(logFile, "utf8").catch(() => "");
  return SOCKET_OPTION_REFUSED.test(log);
}
