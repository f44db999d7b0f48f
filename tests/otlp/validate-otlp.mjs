#!/usr/bin/env node
// Checks OTLP/HTTP JSON trace export bodies (ExportTraceServiceRequest) against the OTLP protobuf
// schema: the opentelemetry-proto .proto files shipped in @opentelemetry/otlp-grpc-exporter-base
// 0.38.0 (build/protos), read with protobufjs. Offline; `make deps` installs node_modules here
// (tests/otlp/install-deps.sh).
//
// That is a 2022 (pre-1.0) revision of opentelemetry-proto, the newest we found on npm as .proto
// files: it lacks later additions (Span.flags, InstrumentationScope.attributes, the
// response's partialSuccess) -- fields our exporter does not send; a document using them would
// be rejected here as unknown. Every field it does send has kept its name, number and type since.
//
// Usage: node tests/otlp/validate-otlp.mjs [FILE...]
//   Each FILE (or stdin when none) holds JSON documents, one per line. Prints one JSON line:
//   {"documents": N, "spans": M, "errors": ["doc 1: resourceSpans[0]...: ...", ...]}
//   and exits 0 when every document is valid, 1 otherwise, 2 on a usage or setup problem.
//
// The OTLP JSON mapping (opentelemetry-proto docs/specification.md "JSON Protobuf Encoding"),
// applied strictly -- a stand-in for a collector that would reject what we send:
//   - keys are the lowerCamelCase JSON names; anything else (snake_case, unknown keys) is an error
//   - traceId / spanId / parentSpanId are hex strings of 16 / 8 bytes (parentSpanId may be "");
//     other bytes fields are base64
//   - enum values are integers, and must be values the enum defines
//   - 64-bit integers are decimal strings or JSON numbers (safe integers), within range; 32-bit
//     integers are JSON numbers within range
//   - doubles are numbers or "NaN" / "Infinity" / "-Infinity"; bools are true/false
//   - a oneof has at most one member set; null is not accepted anywhere (we never send it)
// Then the document is converted (ids hex -> bytes) with protobufjs Type.fromObject, checked with
// Type.verify, encoded to the protobuf wire format, decoded again, and the round trip must give
// the same message. Our own rules on top: ids lowercase and not all zeros, end >= start.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "package.json"));

let protobuf;
let protoRoot;
try {
  protobuf = require("protobufjs");
  protoRoot = join(dirname(require.resolve("@opentelemetry/otlp-grpc-exporter-base/package.json")), "build", "protos");
} catch (e) {
  console.error(`validate-otlp: ${e.message}\n(run \`make deps\`, or tests/otlp/install-deps.sh)`);
  process.exit(2);
}

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => join(protoRoot, target);
root.loadSync("opentelemetry/proto/collector/trace/v1/trace_service.proto", { keepCase: true });
root.resolveAll();
const Request = root.lookupType("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest");

// proto3 json_name: lowerCamelCase of the field name.
const jsonName = (name) => name.replace(/_([a-z0-9])/g, (_m, c) => c.toUpperCase());
const HEX_IDS = { traceId: 16, spanId: 8, parentSpanId: 8 };
const INT32 = new Set(["int32", "sint32", "sfixed32"]);
const UINT32 = new Set(["uint32", "fixed32"]);
const INT64 = new Set(["int64", "sint64", "sfixed64"]);
const UINT64 = new Set(["uint64", "fixed64"]);

function fieldsByJsonName(type) {
  if (!type._jsonFields) {
    type._jsonFields = new Map(type.fieldsArray.map((f) => [jsonName(f.name), f]));
  }
  return type._jsonFields;
}

function checkInteger(value, signed, bits, path, errors) {
  let big;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      errors.push(`${path}: ${value} is not a safe integer`);
      return;
    }
    big = BigInt(value);
  } else if (typeof value === "string" && bits === 64) {
    if (!/^-?(0|[1-9][0-9]*)$/.test(value)) {
      errors.push(`${path}: ${JSON.stringify(value)} is not a decimal integer`);
      return;
    }
    big = BigInt(value);
  } else {
    errors.push(`${path}: expected a ${bits}-bit integer${bits === 64 ? " (number or decimal string)" : " (number)"}, got ${JSON.stringify(value)}`);
    return;
  }
  const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
  const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  if (big < min || big > max) {
    errors.push(`${path}: ${value} out of range for a ${signed ? "" : "u"}int${bits}`);
  }
}

function checkValue(field, value, path, errors) {
  if (value === null) {
    errors.push(`${path}: null`);
    return;
  }
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) {
    if (!Number.isInteger(value)) {
      errors.push(`${path}: enum ${rt.name} must be an integer, got ${JSON.stringify(value)}`);
    } else if (!Object.values(rt.values).includes(value)) {
      errors.push(`${path}: ${value} is not a value of enum ${rt.name}`);
    }
    return;
  }
  if (rt instanceof protobuf.Type) {
    checkMessage(rt, value, path, errors);
    return;
  }
  const t = field.type;
  if (t === "string") {
    if (typeof value !== "string") errors.push(`${path}: expected a string, got ${JSON.stringify(value)}`);
  } else if (t === "bool") {
    if (typeof value !== "boolean") errors.push(`${path}: expected true/false, got ${JSON.stringify(value)}`);
  } else if (t === "double" || t === "float") {
    if (typeof value !== "number" && !["NaN", "Infinity", "-Infinity"].includes(value)) {
      errors.push(`${path}: expected a number, got ${JSON.stringify(value)}`);
    }
  } else if (INT32.has(t)) {
    checkInteger(value, true, 32, path, errors);
  } else if (UINT32.has(t)) {
    checkInteger(value, false, 32, path, errors);
  } else if (INT64.has(t)) {
    checkInteger(value, true, 64, path, errors);
  } else if (UINT64.has(t)) {
    checkInteger(value, false, 64, path, errors);
  } else if (t === "bytes") {
    const key = jsonName(field.name);
    if (typeof value !== "string") {
      errors.push(`${path}: expected a string, got ${JSON.stringify(value)}`);
    } else if (key in HEX_IDS) {
      const n = HEX_IDS[key];
      const emptyOk = key === "parentSpanId";
      if (!(emptyOk && value === "") && !new RegExp(`^[0-9a-fA-F]{${2 * n}}$`).test(value)) {
        errors.push(`${path}: expected ${2 * n} hex digits, got ${JSON.stringify(value)}`);
      } else if (value !== value.toLowerCase()) {
        errors.push(`${path}: our ids are lowercase hex, got ${JSON.stringify(value)}`);
      } else if (value !== "" && /^0+$/.test(value)) {
        errors.push(`${path}: an all-zero id is invalid`);
      }
    } else if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
      errors.push(`${path}: expected base64, got ${JSON.stringify(value)}`);
    }
  } else {
    errors.push(`${path}: unhandled type ${t}`);
  }
}

function checkMessage(type, obj, path, errors) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    errors.push(`${path}: expected an object (${type.name}), got ${JSON.stringify(obj)}`);
    return;
  }
  const fields = fieldsByJsonName(type);
  for (const [key, value] of Object.entries(obj)) {
    const field = fields.get(key);
    const at = path ? `${path}.${key}` : key;
    if (!field) {
      const snake = type.fieldsArray.find((f) => f.name === key);
      errors.push(snake ? `${at}: field names are lowerCamelCase in OTLP JSON (${jsonName(key)})` : `${at}: unknown field of ${type.name}`);
      continue;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) {
        errors.push(`${at}: expected an array`);
        continue;
      }
      value.forEach((v, i) => checkValue(field, v, `${at}[${i}]`, errors));
    } else {
      checkValue(field, value, at, errors);
    }
  }
  for (const oneof of type.oneofsArray) {
    const set = oneof.oneof.filter((name) => jsonName(name) in obj);
    if (set.length > 1) {
      errors.push(`${path || type.name}: more than one of oneof ${oneof.name}: ${set.map(jsonName).join(", ")}`);
    }
  }
}

// OTLP JSON -> the object protobufjs' fromObject expects (field names as in the .proto, ids as
// bytes).
function toProtoObject(type, obj) {
  const out = {};
  const fields = fieldsByJsonName(type);
  for (const [key, value] of Object.entries(obj)) {
    const field = fields.get(key);
    const convert = (v) => {
      if (field.resolvedType instanceof protobuf.Type) return toProtoObject(field.resolvedType, v);
      if (field.type === "bytes") return key in HEX_IDS ? Buffer.from(v, "hex") : Buffer.from(v, "base64");
      if (typeof v === "string" && ["double", "float"].includes(field.type)) return Number(v);
      return v;
    };
    out[field.name] = field.repeated ? value.map(convert) : convert(value);
  }
  return out;
}

function semanticChecks(doc, errors) {
  let spans = 0;
  (doc.resourceSpans || []).forEach((rs, i) =>
    (rs.scopeSpans || []).forEach((ss, j) =>
      (ss.spans || []).forEach((s, k) => {
        spans++;
        const at = `resourceSpans[${i}].scopeSpans[${j}].spans[${k}]`;
        for (const key of ["traceId", "spanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano"]) {
          if (!(key in s)) errors.push(`${at}: ${key} missing`);
        }
        if ("startTimeUnixNano" in s && "endTimeUnixNano" in s && BigInt(s.endTimeUnixNano) < BigInt(s.startTimeUnixNano)) {
          errors.push(`${at}: ends before it starts`);
        }
      })));
  return spans;
}

function validate(doc) {
  const errors = [];
  checkMessage(Request, doc, "", errors);
  if (errors.length > 0) {
    return { errors, spans: 0 };
  }
  const spans = semanticChecks(doc, errors);
  const message = Request.fromObject(toProtoObject(Request, doc));
  const why = Request.verify(message);
  if (why) {
    errors.push(`protobufjs verify: ${why}`);
  }
  const wire = Request.encode(message).finish();
  const back = Request.decode(wire);
  const opts = { longs: String, enums: Number, bytes: String, defaults: false };
  if (JSON.stringify(Request.toObject(back, opts)) !== JSON.stringify(Request.toObject(message, opts))) {
    errors.push("protobuf round trip changed the message");
  }
  return { errors, spans };
}

function main() {
  const files = process.argv.slice(2);
  const texts = files.length > 0 ? files.map((f) => readFileSync(f, "utf8")) : [readFileSync(0, "utf8")];
  const errors = [];
  let documents = 0;
  let spans = 0;
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      documents++;
      let doc;
      try {
        doc = JSON.parse(line);
      } catch (e) {
        errors.push(`doc ${documents}: not JSON: ${e.message}`);
        continue;
      }
      const r = validate(doc);
      spans += r.spans;
      for (const e of r.errors) errors.push(`doc ${documents}: ${e}`);
    }
  }
  console.log(JSON.stringify({ documents, spans, errors }));
  process.exit(errors.length === 0 && documents > 0 ? 0 : 1);
}

main();
