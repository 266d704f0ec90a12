// Process entry of snapctl (bin/snapctl.js runs the compiled copy of this file).
import { runCli } from "./main.js";

process.exitCode = await runCli(process.argv);
