#!/usr/bin/env node
// Offline validation of Kubernetes manifests against the Kubernetes API schemas.
//
//   kubectl kustomize deploy/k8s | node deploy/tools/validate-manifests.mjs
//   node deploy/tools/validate-manifests.mjs deploy/k8s/secret.example.yaml other.yaml
//
// Every YAML document must be a Kubernetes object whose apiVersion/kind exists
// in the schemas of the pinned `kubernetes-models` package (4.5.1: the
// Kubernetes 1.33 API; see deploy/package.json), with a GA apiVersion. Each
// object is checked twice:
//   1. against the JSON schema (types, required fields, enums, formats), with the
//      validators the package compiles from the Kubernetes OpenAPI spec;
//   2. for unknown fields. The OpenAPI schemas allow extra properties, so a typo
//      such as `readinesProbe` would pass (1) and surface only at apply time
//      (rejected or, by clients that do not ask for strict field validation,
//      silently dropped); the field lists come from the package's declarations.
// Exit status: 0 all valid, 1 at least one invalid object, 2 unreadable input.

import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
const modelsRoot = path.dirname(require.resolve("kubernetes-models/package.json"));
const nodeModules = path.dirname(modelsRoot);

// ---- field lists from the .d.ts declarations -------------------------------

const fileCache = new Map();

function readDecl(file) {
  if (!fileCache.has(file)) {
    fileCache.set(file, existsSync(file) ? readFileSync(file, "utf8") : null);
  }
  return fileCache.get(file);
}

// Type text -> {kind: "ref"|"array"|"map"|"scalar", ...}.
function classify(text, imports) {
  const t = text.trim();
  const arr = /^Array<([\s\S]+)>$/.exec(t);
  if (arr) {
    return { kind: "array", of: classify(arr[1], imports) };
  }
  const map = /^\{\s*\[key: string\]:\s*([\s\S]+?);?\s*\}$/.exec(t);
  if (map) {
    return { kind: "map", of: classify(map[1], imports) };
  }
  if (/^I\w+$/.test(t) && imports.has(t)) {
    return { kind: "ref", spec: imports.get(t), name: t };
  }
  return { kind: "scalar" };
}

function resolveSpec(fromFile, spec) {
  const bare = spec.replace(/\.js$/, "");
  if (bare.startsWith(".")) {
    return path.join(path.dirname(fromFile), bare) + ".d.ts";
  }
  return path.join(nodeModules, bare) + ".d.ts";
}

// Returns {props: Map(name -> type)} for the interface a declaration file
// exports under `alias` (or under its own name), or null when it is not an
// object interface (quantities, int-or-string, times...).
const ifaceCache = new Map();

function loadInterface(file, alias) {
  const key = file + "#" + alias;
  if (ifaceCache.has(key)) {
    return ifaceCache.get(key);
  }
  ifaceCache.set(key, null);  // breaks cycles (JSONSchemaProps refers to itself)
  const src = readDecl(file);
  if (src === null) {
    return null;
  }
  // `alias` is either the interface's own name or the long name it is exported
  // under (`export { IProbe as IIoK8sApiCoreV1Probe, ... }`).
  let local = null;
  if (new RegExp("^export interface " + alias + "\\b", "m").test(src)) {
    local = alias;
  } else {
    const m = new RegExp("^export (?:type )?\\{[^}]*\\b(I\\w+) as " + alias + "\\b", "m").exec(src);
    local = m ? m[1] : null;
  }
  if (!local) {
    return null;
  }
  const start = new RegExp("^export interface " + local + "\\b[^{]*\\{$", "m").exec(src);
  if (!start) {
    return null;  // a type alias such as `export type IQuantity = number | string`
  }
  const imports = new Map();
  for (const m of src.matchAll(/^import \{([^}]+)\} from "([^"]+)";$/gm)) {
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
      imports.set(name, resolveSpec(file, m[2]));
    }
  }
  const lines = src.slice(start.index + start[0].length).split("\n");
  const props = new Map();
  for (let i = 0; i < lines.length; ++i) {
    const line = lines[i];
    if (line.startsWith("}")) {
      break;
    }
    const p = /^ {4}"([^"]+)"\??: (.*)$/.exec(line);
    if (!p) {
      continue;
    }
    let text = p[2];
    if (!text.endsWith(";")) {
      // Multi-line type (an inline map): runs to the `};` at the property's indent.
      while (++i < lines.length && !/^ {4}\};?$/.test(lines[i])) {
        text += "\n" + lines[i];
      }
      text += "\n}";
    } else {
      text = text.slice(0, -1);
    }
    props.set(p[1], classify(text, imports));
  }
  const result = { name: local, props };
  ifaceCache.set(key, result);
  return result;
}

function checkFields(value, type, where, errors) {
  if (value === null || value === undefined) {
    return;
  }
  if (type.kind === "array") {
    if (Array.isArray(value)) {
      value.forEach((v, i) => checkFields(v, type.of, `${where}/${i}`, errors));
    }
    return;
  }
  if (type.kind === "map") {
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) {
        checkFields(v, type.of, `${where}/${k}`, errors);
      }
    }
    return;
  }
  if (type.kind !== "ref" || typeof value !== "object" || Array.isArray(value)) {
    return;
  }
  const iface = loadInterface(type.spec, type.name);
  if (!iface || iface.props.size === 0) {
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    const sub = iface.props.get(k);
    if (!sub) {
      errors.push(`${where || "/"}: unknown field "${k}" (not in ${iface.name.slice(1)})`);
      continue;
    }
    checkFields(v, sub, `${where}/${k}`, errors);
  }
}

// ---- per-object validation --------------------------------------------------

export function validateObject(obj) {
  const errors = [];
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    return ["document is not a mapping"];
  }
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return ["apiVersion and kind must be strings"];
  }
  if (!/^([a-z0-9][a-z0-9.-]*\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return [`invalid apiVersion/kind "${apiVersion}" "${kind}"`];
  }
  // The package keeps old versions (extensions/v1beta1, autoscaling/v2beta2...)
  // that current clusters no longer serve; production manifests use GA APIs only.
  if (/(alpha|beta)[0-9]+$/.test(apiVersion)) {
    return [`${apiVersion} is not a GA API version (alpha/beta versions are removed or feature-gated)`];
  }
  const decl = path.join(modelsRoot, apiVersion, kind + ".d.ts");
  if (!existsSync(decl)) {
    return [`${apiVersion} ${kind} is not a built-in Kubernetes API type in the pinned schemas`];
  }
  const mod = require(`kubernetes-models/${apiVersion}/${kind}`);
  const Model = mod[kind];
  try {
    new Model(obj).validate();
  } catch (e) {
    if (Array.isArray(e.errors)) {
      for (const err of e.errors) {
        const extra = err.params && err.params.allowedValues ? ` (${err.params.allowedValues.join(", ")})` : "";
        errors.push(`${err.instancePath || "/"}: ${err.message}${extra}`);
      }
    } else {
      errors.push(String(e.message || e));
    }
  }
  // The package lays models out by apiVersion: "v1" (core group) -> v1/,
  // "apps/v1" -> apps/v1/; each kind's declaration holds interface I<Kind>.
  checkFields(obj, { kind: "ref", spec: decl, name: "I" + kind }, "", errors);
  return errors;
}

function describe(obj) {
  const kind = obj && obj.kind ? obj.kind : "?";
  const name = obj && obj.metadata && obj.metadata.name ? obj.metadata.name : "?";
  return `${kind}/${name}`;
}

function main(argv) {
  const quiet = argv.includes("--quiet");
  const files = argv.filter((a) => a !== "--quiet");
  const sources = files.length === 0 ? ["-"] : files;
  let invalid = 0;
  let count = 0;
  for (const source of sources) {
    let text;
    try {
      text = source === "-" ? readFileSync(0, "utf8") : readFileSync(source, "utf8");
    } catch (e) {
      console.error(`${source}: cannot read: ${e.message}`);
      return 2;
    }
    const label = source === "-" ? "<stdin>" : source;
    const docs = parseAllDocuments(text, { uniqueKeys: true });
    docs.forEach((doc, index) => {
      if (doc.errors.length > 0) {
        invalid++;
        for (const err of doc.errors) {
          console.error(`${label} [doc ${index}]: YAML: ${err.message}`);
        }
        return;
      }
      const obj = doc.toJS();
      if (obj === null || obj === undefined) {
        return;  // empty document (e.g. a trailing ---)
      }
      count++;
      const errors = validateObject(obj);
      if (errors.length > 0) {
        invalid++;
        for (const err of errors) {
          console.error(`${label} [doc ${index}] ${describe(obj)}: ${err}`);
        }
      } else if (!quiet) {
        console.log(`${label} [doc ${index}] ${describe(obj)}: valid`);
      }
    });
  }
  if (count === 0 && invalid === 0) {
    console.error("no Kubernetes objects in the input");
    return 1;
  }
  console.log(`${count - invalid} valid, ${invalid} invalid`);
  return invalid === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
