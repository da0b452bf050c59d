#!/usr/bin/env node
// Launcher for @vercel/cosmosdb-server (the local Cosmos DB NoSQL-API server), owned by the project.
//
// Differences from the package's own CLI (`cosmosdb-server`):
//   * HTTP keep-alive. The CLI creates the server without it, so every response carries
//     `Connection: close` and each SDK call pays a new TCP + TLS handshake (~21 ms a call instead
//     of ~1 ms).
//   * Reading a missing item answers 404 `{"code":"NotFound",...}` like Cosmos DB, instead of the
//     package's 500 (its read handler dereferences the missing document).
//   * Error bodies without a `code` get the Cosmos one for their status (404 NotFound, ...).
//   * Transactional batch (`POST .../docs` with `x-ms-cosmos-is-batch-request`) works for every
//     operation and is atomic, as in Cosmos DB. The package only reads an operation's partition
//     key from the operation itself (the SDKs send it once, in the request header), so only
//     `create` worked; and a failing operation left the ones before it applied. A batch may
//     patch items too (the package patches only outside a batch).
//   * `--cert` / `--key`: HTTPS with the given certificate and key (PEM files).
//     `python -m devstack` passes the ones it makes in its state directory (devstack/certs.py),
//     whose CA the app trusts through COSMOS_CA_CERT, so that the SDK verifies the connection.
//     Without them the package's own self-signed certificate is served (the Python SDK then
//     skips verification for localhost / 127.0.0.1, and urllib3 warns on every request).
//
//   * `--auth aad`: an account with local auth disabled, as the Bicep deploys it. Every request
//     must carry a Microsoft Entra ID token (`type=aad&ver=1.0&sig=<jwt>`, what the SDK sends
//     with a TokenCredential) from an Entra issuer (https://sts.windows.net/...), for this
//     account (audience https://<host> or https://cosmos.azure.com), within its lifetime; the
//     signature is not checked (as Azurite's basic OAuth mode). Key-signed requests get 401.
//     Default `--auth any`: any request, any key (the package's behaviour).
//   * `--auth-log FILE`: one JSON line per request (method, path, Authorization header), for
//     tests that check what the app sends.
//
// Usage: node devstack/cosmos_server.js [--port N] [--host H] [--cert FILE --key FILE] [--no-ssl]
//                                       [--auth any|aad] [--auth-log FILE]
//   port: --port, else $COSMOS_PORT, else 8081; host: --host, else $COSMOS_HOST, else 127.0.0.1.
// Data lives in memory only.
"use strict";

const fs = require("node:fs");

const PKG = "@vercel/cosmosdb-server";

// Patch the read-item handler *before* loading the package entry point: lib/routes.js takes the
// handler functions from their modules when it is first loaded.
const readDocument = require(`${PKG}/lib/handler/read-document`);
const partitionHeader = require(`${PKG}/lib/utils/get-partition-from-header`);

const NOT_FOUND = {
  code: "NotFound",
  message: "Entity with the specified id does not exist in the system.",
};

const originalReadDocument = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  if (collection.read()) {
    let partition;
    try {
      partition = partitionHeader.parsePartitionKey(
        partitionHeader.default(req),
        params.docId,
      );
    } catch (_err) {
      // No usable partition key header: let the package answer as it does.
      return originalReadDocument(account, req, res, params);
    }
    if (!collection.document(params.docId, partition).read()) {
      res.statusCode = 404;
      return { ...NOT_FOUND };
    }
  }
  return originalReadDocument(account, req, res, params);
};

// Transactional batch: every operation on the request's partition, all or nothing. Node runs the
// batch in one go (no other request interleaves), so undoing the applied operations on a failure
// makes it atomic.
const batchDocuments = require(`${PKG}/lib/handler/batch-documents`);
const documentOperations = require(`${PKG}/lib/handler/_document-operations`);
const readJson = require(`${PKG}/lib/json`).default;

const { patchOperation } = require(`${PKG}/lib/handler/_patch-operations`);

// The first operation of a patch whose path Cosmos DB refuses: one whose parent is missing (the
// package would write it one level up) or an array index out of range. Checked on a copy,
// operation after operation, as the service applies them. Returns its index or -1.
function refusedPatchOperation(document, operations) {
  const copy = JSON.parse(JSON.stringify(document || {}));
  for (let i = 0; i < operations.length; i += 1) {
    const { op, path, value } = operations[i] || {};
    if (!["set", "add", "replace", "remove"].includes(op) || typeof path !== "string") {
      continue; // the package checks the rest
    }
    const segments = path.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    const key = segments.pop();
    let parent = copy;
    for (const segment of segments) {
      parent = parent !== null && typeof parent === "object" ? parent[segment] : undefined;
    }
    if (parent === null || typeof parent !== "object") return i;
    if (Array.isArray(parent)) {
      const index = key === "-" ? parent.length : Number(key);
      const last = op === "add" ? parent.length : parent.length - 1;
      if (!Number.isInteger(index) || index < 0 || index > last) return i;
      if (op === "remove") parent.splice(index, 1);
      else if (op === "add") parent.splice(index, 0, value);
      else parent[index] = value;
    } else if (op === "remove" || op === "replace") {
      if (!(key in parent)) return i;
      if (op === "remove") delete parent[key];
      else parent[key] = value;
    } else {
      parent[key] = value;
    }
  }
  return -1;
}

const BATCH_OPERATIONS = {
  Create: documentOperations.createOperation,
  Upsert: documentOperations.upsertOperation,
  Read: documentOperations.readOperation,
  Delete: documentOperations.deleteOperation,
  Replace: documentOperations.replaceOperation,
  // A patch in a batch names its item by `id`; its operations and condition are its body.
  Patch: (collection, op) => {
    const input = {
      id: op.id,
      partitionKey: op.partitionKey,
      ifMatch: op.ifMatch,
      operations: (op.resourceBody && op.resourceBody.operations) || [],
      condition: op.resourceBody && op.resourceBody.condition,
    };
    const found = documentOperations.readOperation(collection, op);
    if (found.statusCode === 200) {
      const refused = refusedPatchOperation(found.body, input.operations);
      if (refused >= 0) {
        return {
          statusCode: 400,
          body: { code: "BadRequest", message: `For Operation(${refused}): path not found` },
        };
      }
    }
    return patchOperation(collection, input);
  },
};

function operationId(input) {
  return input && (input.id || (input.resourceBody && input.resourceBody.id));
}

// Put the stored document `before` back (undefined: there was none) in place of what is there.
function restoreDocument(collection, id, partition, before) {
  const items = collection.documents;
  if (collection.document(id, partition).read()) {
    items.delete(id, partition);
  }
  if (before) {
    items._set(before); // as it was, with its _etag, _rid and _ts
  }
}

batchDocuments.default = async (account, req, res, { dbId, collId }) => {
  const body = await readJson(req);
  const collection = account.database(dbId).collection(collId);
  if (!collection.read()) {
    res.statusCode = 404;
    return {};
  }
  if (!Array.isArray(body)) {
    res.statusCode = 400;
    return { message: "Invalid request body" };
  }
  // Check every operation before running any: a refused batch changes nothing.
  const header = partitionHeader.default(req);
  let batchPartition;
  const planned = [];
  for (const input of body) {
    const run = input && BATCH_OPERATIONS[input.operationType];
    if (!run) {
      res.statusCode = 400;
      return { code: "BadRequest", message: `Operation type '${input && input.operationType}' is not supported in Batch.` };
    }
    const op = input.partitionKey === undefined && header ? { ...input, partitionKey: header } : input;
    const id = operationId(op);
    let partition;
    try {
      partition = partitionHeader.parsePartitionKey(op.partitionKey, id);
    } catch (err) {
      res.statusCode = 400;
      return { code: "BadRequest", message: err.message };
    }
    if (batchPartition !== undefined && partition !== batchPartition) {
      res.statusCode = 400;
      return { code: "BadRequest", message: "A transactional batch spans one partition key." };
    }
    batchPartition = partition;
    planned.push({ input, op, id, partition, run });
  }
  const undo = [];
  const results = [];
  let failed = false;
  try {
    for (const { input, op, id, partition, run } of planned) {
      if (failed) {
        results.push({ statusCode: 424, requestCharge: 0 });
        continue;
      }
      const before = id === undefined ? undefined : collection.document(id, partition).read();
      const result = run(collection, op);
      if (result.statusCode >= 400) {
        failed = true;
        results.push({ statusCode: result.statusCode, requestCharge: 0 });
        continue;
      }
      if (input.operationType !== "Read") {
        undo.push(() => restoreDocument(collection, id, partition, before));
      }
      results.push({
        statusCode: result.statusCode,
        requestCharge: 1,
        eTag: result.body ? result.body._etag : undefined,
        resourceBody: result.body,
      });
    }
  } catch (err) {
    undo.reverse().forEach((step) => step());
    throw err; // the package answers 500; nothing of the batch stays applied
  }
  if (failed) {
    undo.reverse().forEach((step) => step());
    // Every operation of a failed batch reports no effect; the failing one keeps its status.
    return results.map((r) => (r.statusCode >= 400 ? r : { statusCode: 424, requestCharge: 0 }));
  }
  return results;
};

const { createHttpServer, createHttpsServer } = require(PKG);

const ERROR_CODES = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  409: "Conflict",
  412: "PreconditionFailed",
  413: "RequestEntityTooLarge",
  429: "TooManyRequests",
  500: "InternalServerError",
};

// Give error bodies the Cosmos `code` field when the package leaves it out (e.g. `{}` for a
// replace or delete of a missing item).
function addErrorCodes(req, res) {
  const end = res.end;
  res.end = function patchedEnd(chunk, ...rest) {
    const code = ERROR_CODES[res.statusCode];
    if (code && typeof chunk === "string" && chunk.startsWith("{")) {
      try {
        const body = JSON.parse(chunk);
        if (body && typeof body === "object" && !body.code) {
          body.code = code;
          if (body.message === undefined || body.message === "") {
            body.message = code === "NotFound" ? NOT_FOUND.message : code;
          }
          return end.call(this, JSON.stringify(body), ...rest);
        }
      } catch (_err) {
        // Not JSON: leave it.
      }
    }
    return end.call(this, chunk, ...rest);
  };
}

function parseArgs(argv) {
  const args = {
    port: Number.parseInt(process.env.COSMOS_PORT || "8081", 10),
    host: process.env.COSMOS_HOST || "127.0.0.1",
    ssl: true,
    cert: null,
    key: null,
    auth: "any",
    authLog: null,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    if (key === "-p" || key === "--port") {
      args.port = Number.parseInt(argv[(i += 1)], 10);
    } else if (key.startsWith("--port=")) {
      args.port = Number.parseInt(key.slice("--port=".length), 10);
    } else if (key === "--host") {
      args.host = argv[(i += 1)];
    } else if (key.startsWith("--host=")) {
      args.host = key.slice("--host=".length);
    } else if (key === "--cert" || key === "--key") {
      args[key.slice(2)] = argv[(i += 1)];
    } else if (key.startsWith("--cert=") || key.startsWith("--key=")) {
      const eq = key.indexOf("=");
      args[key.slice(2, eq)] = key.slice(eq + 1);
    } else if (key === "--auth") {
      args.auth = argv[(i += 1)];
    } else if (key === "--auth-log") {
      args.authLog = argv[(i += 1)];
    } else if (key === "--no-ssl") {
      args.ssl = false;
    } else if (/^\d+$/.test(key)) {
      args.port = Number.parseInt(key, 10);
    } else if (key === "-h" || key === "--help") {
      console.log(
        "usage: cosmos_server.js [--port N] [--host H] [--cert FILE --key FILE] [--no-ssl] " +
          "[--auth any|aad] [--auth-log FILE]",
      );
      process.exit(0);
    } else {
      console.error(`cosmos_server.js: unknown argument ${key}`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    console.error(`cosmos_server.js: bad port ${args.port}`);
    process.exit(2);
  }
  if (args.auth !== "any" && args.auth !== "aad") {
    console.error(`cosmos_server.js: --auth is any or aad, not ${args.auth}`);
    process.exit(2);
  }
  if (Boolean(args.cert) !== Boolean(args.key)) {
    console.error("cosmos_server.js: --cert and --key go together");
    process.exit(2);
  }
  return args;
}

const ENTRA_ISSUER_PREFIX = "https://sts.windows.net/";

// Why an Entra ID token does not authorize a request to this account ("" when it does).
function aadProblem(req) {
  let auth;
  try {
    auth = new URLSearchParams(decodeURIComponent(req.headers.authorization || ""));
  } catch (_err) {
    return "the Authorization header is not URL-encoded";
  }
  if (auth.get("type") !== "aad") {
    return "Local Authorization is disabled. Use an AAD token to authorize all requests.";
  }
  const parts = (auth.get("sig") || "").split(".");
  let claims;
  try {
    claims = JSON.parse(Buffer.from(parts[1] || "", "base64url").toString("utf8"));
  } catch (_err) {
    return "the AAD token is not a JWT";
  }
  const now = Date.now() / 1000;
  if (typeof claims.iss !== "string" || !claims.iss.startsWith(ENTRA_ISSUER_PREFIX)) {
    return "the AAD token's issuer is not Microsoft Entra ID";
  }
  if (typeof claims.exp !== "number" || claims.exp < now) {
    return "the AAD token has expired";
  }
  if (typeof claims.nbf === "number" && claims.nbf > now) {
    return "the AAD token is not valid yet";
  }
  const host = (req.headers.host || "").replace(/:\d+$/, "");
  const audiences = [`https://${host}`, "https://cosmos.azure.com"];
  if (!audiences.includes(String(claims.aud).replace(/\/$/, ""))) {
    return `the AAD token's audience ${claims.aud} is not this account`;
  }
  return "";
}

// Put a gate in front of the package's request handlers: record, then refuse or pass on.
function guardRequests(server, args) {
  const handlers = server.listeners("request");
  server.removeAllListeners("request");
  server.on("request", (req, res) => {
    if (args.authLog) {
      const line = {
        method: req.method,
        path: req.url,
        authorization: req.headers.authorization || "",
      };
      fs.appendFileSync(args.authLog, `${JSON.stringify(line)}\n`);
    }
    const problem = args.auth === "aad" ? aadProblem(req) : "";
    if (problem) {
      res.statusCode = 401;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ code: "Unauthorized", message: problem }));
      return;
    }
    for (const handler of handlers) {
      handler.call(server, req, res);
    }
  });
}

// The TLS options: the given certificate and key, else the package's own (createHttpsServer's
// defaults).
function tlsOptions(args) {
  if (!args.ssl || !args.cert) {
    return {};
  }
  try {
    return { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) };
  } catch (err) {
    console.error(`cosmos_server.js: ${err.message}`);
    process.exit(2);
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const create = args.ssl ? createHttpsServer : createHttpServer;
  // keepAlive: the package then answers `Connection: keep-alive` instead of `close`.
  const server = create({ keepAlive: true, ...tlsOptions(args) });
  // Keep idle connections well past the clients' pool reuse, so that a pooled connection is
  // rarely closed under a request that is just being sent.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  server.prependListener("request", addErrorCodes);
  guardRequests(server, args);
  server.on("error", (err) => {
    console.error(`cosmos_server.js: ${err.message}`);
    process.exit(1);
  });
  server.listen(args.port, args.host, () => {
    const { port } = server.address();
    const scheme = args.ssl ? "https" : "http";
    let tls = "";
    if (args.ssl) {
      tls = args.cert ? `, certificate ${args.cert}` : ", the package's certificate";
    }
    console.log(
      `cosmos emulator listening on ${scheme}://${args.host}:${port} ` +
        `(keep-alive${tls}, auth ${args.auth})`,
    );
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
