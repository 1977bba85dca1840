// Publish an upload to extworker from Node.js with the `redis` package, wait for it,
// and print the job document and the finished file record.
//
//   node publish.mjs --url https://example.com/a.jpg --file-name a.jpg \
//        --extensions '[{"name":"remove-bg"}]' [--folder /products] [--job-id ID]
//        [--webhook-url URL] [--account ACME] [--wait 120]
//   node publish.mjs --blob-key incoming/a.jpg --file-name a.jpg ...
//
// Environment: REDIS_URL (default redis://127.0.0.1:6379/0), EXTWORKER_NAMESPACE.
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { createClient } from "redis";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" }, "blob-key": { type: "string" }, "file-name": { type: "string" },
    folder: { type: "string", default: "/" }, extensions: { type: "string", default: "[]" },
    "job-id": { type: "string" }, "webhook-url": { type: "string" },
    account: { type: "string", default: "default" }, wait: { type: "string", default: "120" },
    "unique-name": { type: "string", default: "true" },
  },
});
const ns = process.env.EXTWORKER_NAMESPACE ?? "extworker";
const jobId = args["job-id"] ?? `node-${randomUUID()}`;
const job = {
  jobId,
  accountId: args.account,
  upload: {
    fileName: args["file-name"],
    folder: args.folder,
    useUniqueFileName: args["unique-name"] !== "false",
    ...(args.url ? { url: args.url } : { blobKey: args["blob-key"] }),
  },
  extensions: JSON.parse(args.extensions),
  ...(args["webhook-url"] ? { webhookUrl: args["webhook-url"] } : {}),
};

const client = createClient({ url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0" });
client.on("error", (err) => console.error("redis:", err.message));
await client.connect();
await client.xAdd(`${ns}:intake`, "*", { job: JSON.stringify(job) });

const final = (doc) =>
  doc.state === "rejected" ||
  (doc.state === "dispatched" && Object.values(doc.extensions).every((e) => e.status !== "pending"));
const deadline = Date.now() + Number(args.wait) * 1000;
let doc = null;
for (;;) {
  const raw = await client.get(`${ns}:job:${jobId}`);
  doc = raw ? JSON.parse(raw) : null;
  if (doc && final(doc)) break;
  if (Date.now() > deadline) {
    console.error(`job ${jobId} not final after ${args.wait}s`);
    await client.quit();
    process.exit(2);
  }
  await new Promise((r) => setTimeout(r, 200));
}
const file = doc.fileId ? JSON.parse(await client.get(`${ns}:file:${doc.fileId}`)) : null;
console.log(JSON.stringify({ job: doc, file }));
await client.quit();
const failed = doc.state === "rejected" || Object.values(doc.extensions).some((e) => e.status === "failed");
process.exit(failed ? 1 : 0);
