// Offline validation of Kubernetes manifests, as `kubectl apply` would need
// them to be, without a cluster:
//
//   node tests/deploy/validate.mjs deploy/daemonset.yaml deploy/service.yaml ...
//
// Each YAML document is checked two ways:
//  1. kubernetes-models (Kubernetes API schemas) and
//     @kubernetes-models/prometheus-operator (the operator's CRD schemas):
//     their JSON-schema validators catch wrong types, missing required
//     fields, bad enum values and formats. They let unknown keys through, as
//     the API schemas do not forbid additional properties.
//  2. Every key is looked up in the same models' TypeScript declarations
//     (generated from those schemas) with the TypeScript compiler's type
//     checker: a key that is neither a property of its object's type nor
//     allowed by an index signature (labels, annotations, resource maps) is
//     an unknown field, which the API server's strict field validation
//     rejects (`hostPid` for `hostPID`).
//
// Prints one line per document (`ok`) or per error, and exits 1 on any error.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));

// apiVersion -> module of the models of that group/version.
function modulePath(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/${group}/${version}`;
  return group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
}

function readDocuments(file) {
  const docs = [];
  // YAML 1.1, as Kubernetes reads manifests (sigs.k8s.io/yaml): `yes` is a bool.
  parseAllDocuments(readFileSync(file, "utf8"), { version: "1.1", uniqueKeys: true }).forEach((doc, index) => {
    const where = `${file}#${index}`;
    if (doc.errors.length) {
      docs.push({ where, errors: doc.errors.map((e) => `yaml: ${e.message.split("\n")[0]}`) });
      return;
    }
    const value = doc.toJS();
    if (value === null || value === undefined) return; // an empty document (a trailing ---)
    docs.push({ where, value, errors: [] });
  });
  return docs;
}

// Step 1: the JSON-schema validators shipped with the models.
async function schemaErrors(doc) {
  const { apiVersion, kind } = doc.value;
  if (typeof apiVersion !== "string" || typeof kind !== "string") return ["apiVersion and kind must be strings"];
  let models;
  try {
    models = await import(modulePath(apiVersion));
  } catch {
    return [`apiVersion ${apiVersion}: not a known Kubernetes or Prometheus Operator API version`];
  }
  const Model = models[kind];
  if (typeof Model !== "function" || Model.apiVersion !== apiVersion) return [`kind ${kind}: not a kind of ${apiVersion}`];
  doc.typeImport = { module: `${modulePath(apiVersion)}/${kind}`, name: `I${kind}` };
  try {
    new Model(doc.value).validate();
    return [];
  } catch (e) {
    const details = e.errors ?? e.details ?? [];
    if (Array.isArray(details) && details.length) {
      return details.map((d) => `schema: ${d.instancePath || "/"}: ${d.message}${d.params ? " " + JSON.stringify(d.params) : ""}`);
    }
    return [`schema: ${e.message}`];
  }
}

// Step 2: every key against the declared properties of its object's type.
function unknownKeyErrors(docs) {
  const typed = docs.filter((d) => d.typeImport);
  if (!typed.length) return;
  const lines = [];
  typed.forEach((doc, i) => {
    lines.push(`import type { ${doc.typeImport.name} as T${i} } from "${doc.typeImport.module}";`);
  });
  typed.forEach((doc, i) => {
    lines.push(`export const doc${i}: T${i} = ${JSON.stringify(doc.value, null, 1)};`);
  });
  const file = path.join(here, "__manifests__.ts");
  const source = lines.join("\n");
  const options = {
    strict: true, noEmit: true, skipLibCheck: true, types: [],
    module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, target: ts.ScriptTarget.ES2022,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang, true) : getSourceFile(name, lang, ...rest);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const checker = program.getTypeChecker();
  const sf = program.getSourceFile(file);

  // A module that did not resolve would make every type `any` and pass
  // everything: fail loudly instead.
  for (const d of program.getSemanticDiagnostics(sf)) {
    if (d.code === 2307 || d.code === 2305 || d.code === 2724) {
      throw new Error(`validate.mjs: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`);
    }
  }

  const nonNullable = (t) => (t.isUnion() ? t.types : [t]).filter((m) => !(m.flags & (ts.TypeFlags.Null | ts.TypeFlags.Undefined)));
  const allowsKey = (type, key) =>
    nonNullable(type).some((t) =>
      t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown) ||
      t.getProperty(key) ||
      checker.getIndexInfosOfType(t).length > 0);
  const known = (type) => [...new Set(nonNullable(type).flatMap((t) => t.getProperties().map((p) => p.name)))];

  function visit(node, jsonPath, doc) {
    if (ts.isObjectLiteralExpression(node)) {
      const type = checker.getContextualType(node);
      for (const prop of node.properties) {
        if (!ts.isPropertyAssignment(prop)) continue;
        const key = prop.name.text;
        if (type && !allowsKey(type, key)) {
          const names = known(type);
          const near = names.find((n) => n.toLowerCase() === key.toLowerCase());
          doc.errors.push(`unknown field: ${jsonPath}/${key}` + (near ? ` (did you mean ${near}?)` : ""));
          continue; // nothing below an unknown key has a type to check against
        }
        visit(prop.initializer, `${jsonPath}/${key}`, doc);
      }
    } else if (ts.isArrayLiteralExpression(node)) {
      node.elements.forEach((e, i) => visit(e, `${jsonPath}/${i}`, doc));
    }
  }
  for (const stmt of sf.statements) {
    if (!ts.isVariableStatement(stmt)) continue;
    for (const decl of stmt.declarationList.declarations) {
      const i = Number(decl.name.text.slice(3));
      visit(decl.initializer, "", typed[i]);
    }
  }
}

async function main() {
  const files = process.argv.slice(2);
  if (!files.length) {
    console.error("usage: node validate.mjs MANIFEST.yaml...");
    process.exit(2);
  }
  const docs = files.flatMap(readDocuments);
  for (const doc of docs) if (!doc.errors.length) doc.errors.push(...(await schemaErrors(doc)));
  unknownKeyErrors(docs.filter((d) => d.value));
  let failed = 0;
  for (const doc of docs) {
    const what = doc.value ? `${doc.value.kind}/${doc.value.metadata?.name ?? "?"}` : "";
    if (doc.errors.length) {
      failed++;
      for (const e of doc.errors) console.log(`FAIL ${doc.where} ${what}: ${e}`);
    } else {
      console.log(`ok   ${doc.where} ${what} (${doc.value.apiVersion})`);
    }
  }
  console.log(`${docs.length - failed} valid, ${failed} invalid`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(2);
});
