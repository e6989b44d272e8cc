#!/usr/bin/env node
// Diffs a live PostgreSQL database against a Prisma schema file with Prisma's
// own schema engine, run as WebAssembly (the native engine binary cannot be
// downloaded here).
//
//   node prisma/tools/schema-diff.mjs --url <postgres URL> --schema prisma/schema.prisma
//     [--external-table auth.users]...
//
// Exit 0: in sync. Exit 2: drift, and stdout holds the SQL that would bring
// the database to the schema. Exit 1: any other failure, one line on stderr.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import { SchemaEnginePg } from './pg-adapter.mjs';

// The package's entry module imports the .wasm as an ES module, which Node 20
// cannot do without a flag, so the module is instantiated here from its
// bytes and handed to the package's JS glue, as that entry module would.
const glueUrl = import.meta.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
const engineWasm = await import(glueUrl);

// The glue reports Rust panics to this global before the WASM traps.
let panicMessage;
globalThis.PRISMA_WASM_PANIC_REGISTRY = { set_message: (message) => { panicMessage = message; } };

// Engine errors span several lines (schema errors quote the offending
// source); keep the first and, when given, the file:line it points at.
function fail(message) {
  const [first, ...rest] = message.split('\n');
  const location = rest.map((line) => /^\s*-->\s*(\S+)/.exec(line)?.[1]).find(Boolean);
  process.stderr.write(`schema-diff: ${first}${location ? ` (${location})` : ''}\n`);
  process.exit(1);
}

// A panic traps outside the promise the engine returned, so it surfaces here.
// Its message puts the panic's location and its reason on separate lines.
process.on('uncaughtException', (error) => {
  fail(panicMessage ? `schema engine panicked: ${panicMessage.replaceAll('\n', ' ')}` : String(error));
});

async function loadEngineWasm() {
  const bytes = await readFile(new URL('schema_engine_bg.wasm', glueUrl));
  const { instance } = await WebAssembly.instantiate(bytes, { './schema_engine_bg.js': engineWasm });
  engineWasm.__wbg_set_wasm(instance.exports);
  instance.exports.__wbindgen_start();
}

function parseOptions() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      schema: { type: 'string' },
      'external-table': { type: 'string', multiple: true, default: ['auth.users'] },
    },
  });
  if (!values.url) throw new Error('--url is required');
  if (!values.schema) throw new Error('--schema is required');
  // Checked here because pg takes nearly any string as a database name; the
  // rest is left to pg, which also reads URLs WHATWG's parser rejects, such
  // as postgresql://user:@/db?host=/socket/dir.
  if (!/^postgres(ql)?:\/\//.test(values.url)) throw new Error('--url must start with postgresql://');
  return { url: values.url, schemaPath: resolve(values.schema), externalTables: values['external-table'] };
}

// Driver errors adapter-pg does not classify (ENOENT for a socket that is
// not there, as when the server is stopped) reach the engine as
// "External error id#N"; the original error waits in the adapter's registry.
function adapterCause(error, errorRegistry) {
  const id = /External error id#(\d+)/.exec(error.message)?.[1];
  const cause = id && errorRegistry.consumeError(Number(id))?.error;
  return cause ? new Error(`pg: ${cause.message ?? cause}`) : error;
}

async function diff({ url, schemaPath, content, externalTables }) {
  // pg reads a libpq-style ?host=/socket/dir from the connection string, so
  // socket-only servers work as is. allowExitOnIdle lets the process end
  // once the engine is done instead of waiting for idle connections to time out.
  const adapter = bindMigrationAwareSqlAdapterFactory(
    new SchemaEnginePg({ connectionString: url, allowExitOnIdle: true }),
  );
  try {
    // The engine connects here already. Its log lines are JSON traces meant
    // for Prisma's CLI, unused here.
    const engine = await engineWasm.SchemaEngine.new({ datamodels: undefined }, () => {}, adapter);
    // Prisma 7 schemas name no URL: the datasource block gives the provider
    // and the schemas to look at, and the adapter gives the connection.
    const files = [{ path: schemaPath, content }];
    return await engine.diff({
      from: { tag: 'schemaDatasource', files, configDir: dirname(schemaPath) },
      to: { tag: 'schemaDatamodel', files },
      script: true,
      exitCode: true,
      filters: { externalTables, externalEnums: [] },
    });
  } catch (error) {
    throw adapterCause(error, adapter.errorRegistry);
  }
}

async function main() {
  const { url, schemaPath, externalTables } = parseOptions();
  const content = await readFile(schemaPath, 'utf8');
  await loadEngineWasm();
  const { exitCode, stdout } = await diff({ url, schemaPath, content, externalTables });
  if (exitCode === 0) {
    process.stdout.write(`in sync: database matches ${schemaPath}\n`);
  } else {
    process.stdout.write(stdout.endsWith('\n') ? stdout : `${stdout}\n`);
  }
  return exitCode;
}

main().then((code) => { process.exitCode = code; }, (error) => fail(error?.message ?? String(error)));
