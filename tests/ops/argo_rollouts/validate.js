// Validates custom resources against their CRDs' OpenAPI schemas: the Argo Rollouts kinds with
// @kubernetes-models/argo-rollouts, strictly (like `kubectl apply`'s field validation Strict, a field a schema
// does not declare is an error); the cert-manager kinds with @kubernetes-models/cert-manager, whose validators
// come precompiled (types, enums, required fields, formats), so an undeclared field there cannot be refused
// here. Reads a JSON array of objects on stdin; prints a JSON array with, per object, its list of errors.
"use strict";
const validation = require("@kubernetes-models/validate");

// The Argo CRD schemas leave additionalProperties open where Kubernetes itself would reject (or silently drop)
// unknown fields; close every object schema that declares its properties and does not preserve unknowns.
function strict(schema) {
  if (Array.isArray(schema)) return schema.map(strict);
  if (schema === null || typeof schema !== "object") return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    out[key] = key === "properties" ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, strict(v)])) : strict(value);
  }
  if (out.properties && out.additionalProperties === undefined && !out["x-kubernetes-preserve-unknown-fields"]) {
    out.additionalProperties = false;
  }
  return out;
}
const register = validation.register;
validation.register = (id, schema) => register(id, strict(schema));

// Each package is loaded when an object of its apiVersion comes, so a missing one names itself.
const packages = {
  "argoproj.io/v1alpha1": "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1",
  "cert-manager.io/v1": "@kubernetes-models/cert-manager/cert-manager.io/v1",
};
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = input.map((obj) => {
  const Model = packages[obj.apiVersion] && require(packages[obj.apiVersion])[obj.kind];
  if (!Model || obj.apiVersion !== Model.apiVersion) return [`no schema for ${obj.apiVersion} ${obj.kind}`];
  try {
    new Model(obj).validate();
    return [];
  } catch (error) {
    return (error.errors || [{ message: error.message }]).map(
      (e) => `${e.instancePath || "/"} ${e.message}${e.params && e.params.additionalProperty ? `: ${e.params.additionalProperty}` : ""}`,
    );
  }
});
process.stdout.write(JSON.stringify(results));
