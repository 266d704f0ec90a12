import { expect, it } from "vitest";
import { expectedResult, runDemo } from "../../../controller/service/demo-scenario.js";

it("computes the generator's value in closed form", () => {
  let x = 1;
  for (let i = 0; i < 100_000; i++) x = (x * 16807) % 2147483647;
  expect(expectedResult(100_000)).toBe(x);
});

// `snapctl demo`, shortened: the real agent, CRIU, the Fusion mount and the local cloud.
it("runs the demo: a task checkpointed, interrupted, restored on another instance, with the correct result", async () => {
  const lines: string[] = [];
  const result = await runDemo({
    steps: 30,
    checkpointInterval: "10s",
    noticeSeconds: 15,
    onProgress: (line) => lines.push(line),
  });
  expect(result, lines.join("\n")).toMatchObject({
    state: "succeeded",
    correct: true,
    restored: true,
    attempts: 2,
  });
  expect(result.result).toBe(result.expected);
  expect(result.task.restores).toBe(1);
  expect(result.task.reruns).toBe(0);
  expect(result.savedMs).toBeGreaterThan(0);
  expect(lines.join("\n")).toMatch(/restoring -> running on i-local\w+ \(local-1[bc]/);
}, 300_000);
