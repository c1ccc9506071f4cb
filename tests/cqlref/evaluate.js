// The reference engine: the official ELM of the eight care-gap measures, run by the JavaScript CQL
// engine (cql-execution) over FHIR R4 Bundles (cql-exec-fhir), with the official value set
// expansions served by an in-memory code service.
//
//   node evaluate.js ECQM_DIR < request.json > results.json
//
// request: {"period": ["2025-01-01", "2025-12-31"], "libraries": ["CervicalCancerScreeningFHIR", ...],
//           "bundles": [<FHIR Bundle with one Patient>, ...]}
// results: {"<library>": {"<patient id>": {"<define name>": true|false|null, ...}}, ...}
//          (only the population definitions: boolean-valued top-level defines)
//
// Profile checks. The ELM was translated against QI-Core 4.1.1, whose retrieves carry a QI-Core
// templateId; cql-exec-fhir reads FHIR R4 and, without `requireProfileTagging`, ignores the
// templateId and returns every resource of the base type. That is what we want for all profiles but
// those whose membership the measures rely on, which we apply here as QI-Core 4.1.1 defines them:
//   qicore-medicationrequest / qicore-servicerequest: doNotPerform is not true
//   qicore-mednotrequested / qicore-servicenotrequested: doNotPerform is true
//   FHIR vital-signs bp (observation-bp): code is LOINC 85354-9
'use strict';

const fs = require('fs');
const path = require('path');
const cql = require('cql-execution');
const cqlfhir = require('cql-exec-fhir');

const QICORE = 'http://hl7.org/fhir/us/qicore/StructureDefinition/';
const PROFILE_FILTERS = {
  [QICORE + 'qicore-medicationrequest']: (r) => r.doNotPerform !== true,
  [QICORE + 'qicore-servicerequest']: (r) => r.doNotPerform !== true,
  [QICORE + 'qicore-mednotrequested']: (r) => r.doNotPerform === true,
  [QICORE + 'qicore-servicenotrequested']: (r) => r.doNotPerform === true,
  'http://hl7.org/fhir/StructureDefinition/bp': (r) =>
    ((r.code && r.code.coding) || []).some((c) => c.system === 'http://loinc.org' && c.code === '85354-9'),
};

// One model mismatch is patched in the ELM itself. The translator, reading the QI-Core model
// info, types a resource's `id` and a `Reference.reference` as System.String and compares or
// splits them directly (the `[MedicationRequest: "VS"]` expansion:
// `M.id = Last(Split(MR.medication.reference, '/'))`); cql-exec-fhir gives FHIR primitives
// there, so the comparison is never true and Split fails. We wrap such a property in
// FHIRHelpers.ToString, which is what the translator emits against the plain FHIR model.
function isStringProperty(node) {
  return (
    node &&
    node.type === 'Property' &&
    ((node.path === 'id' && node.scope) || node.path === 'reference' || node.path.endsWith('.reference'))
  );
}

function wrapStringProperties(node, parent) {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      if (isStringProperty(node[i]) && !(parent && parent.type === 'FunctionRef' && parent.name === 'ToString')) {
        node[i] = { type: 'FunctionRef', libraryName: 'FHIRHelpers', name: 'ToString', operand: [node[i]] };
      } else {
        wrapStringProperties(node[i], parent);
      }
    }
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node)) {
    if (k === 'source' && node.type === 'Property') continue;
    if (isStringProperty(v) && !(node.type === 'FunctionRef' && node.name === 'ToString')) {
      node[k] = { type: 'FunctionRef', libraryName: 'FHIRHelpers', name: 'ToString', operand: [v] };
    } else {
      wrapStringProperties(v, node);
    }
  }
}

// The translator's expansion of `[MedicationRequest: "VS"]` to referenced Medications ends in
// `InValueSet(Property code)` with neither scope nor source (meant: the joined Medication `M`) and
// no FHIRHelpers.ToConcept; cql-execution evaluates that property against nothing. We give it the
// relationship's alias as scope and convert it, as written in CQMCommon's getMedicationCode().
function scopeMedicationCodes(node) {
  if (Array.isArray(node)) return node.forEach(scopeMedicationCodes);
  if (node === null || typeof node !== 'object') return;
  if (node.type === 'With' && node.suchThat && Array.isArray(node.suchThat.operand)) {
    for (const op of node.suchThat.operand) {
      if (op.type === 'InValueSet' && op.code && op.code.type === 'Property' && !op.code.scope && !op.code.source) {
        op.code = {
          type: 'FunctionRef',
          libraryName: 'FHIRHelpers',
          name: 'ToConcept',
          operand: [{ type: 'Property', path: op.code.path, scope: node.alias }],
        };
      }
    }
  }
  Object.values(node).forEach(scopeMedicationCodes);
}

function loadLibraries(elmDir) {
  const libs = {};
  for (const f of fs.readdirSync(elmDir)) {
    if (!f.endsWith('.json')) continue;
    const elm = JSON.parse(fs.readFileSync(path.join(elmDir, f), 'utf8'));
    wrapStringProperties(elm.library.statements, null);
    scopeMedicationCodes(elm.library.statements);
    libs[elm.library.identifier.id] = elm;
  }
  return libs;
}

function loadValueSets(dirs) {
  const out = {};
  for (const dir of dirs) {
    if (!fs.existsSync(dir)) continue;
    for (const f of fs.readdirSync(dir)) {
      if (!f.endsWith('.json')) continue;
      const vs = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      if (vs.resourceType !== 'ValueSet' || !vs.expansion) continue;
      const codes = (vs.expansion.contains || []).map((c) => ({ code: c.code, system: c.system }));
      // The ELM names value sets by canonical URL, without a version.
      out[vs.url] = { [vs.version || '']: codes };
    }
  }
  return out;
}

// Wraps a cql-exec-fhir patient so that retrieves apply the profile filters above.
function filterPatient(patient) {
  const findRecords = patient.findRecords.bind(patient);
  patient.findRecords = (profile, details) => {
    const records = findRecords(profile, details);
    const keep = PROFILE_FILTERS[(details && details.templateId) || profile];
    return keep ? records.filter((r) => keep(r._json)) : records;
  };
  return patient;
}

async function main() {
  const ecqmDir = process.argv[2];
  const request = JSON.parse(fs.readFileSync(0, 'utf8'));
  const repo = new cql.Repository(loadLibraries(path.join(ecqmDir, 'elm')));
  const codes = new cql.CodeService(
    loadValueSets([path.join(ecqmDir, 'valuesets'), path.join(ecqmDir, 'valuesets-medications')]),
  );
  const [start, end] = request.period;
  const period = new cql.Interval(
    cql.DateTime.parse(`${start}T00:00:00.000Z`),
    cql.DateTime.parse(`${end}T23:59:59.999Z`),
    true,
    true,
  );
  const out = {};
  for (const name of request.libraries) {
    const lib = repo.resolve(name);
    if (!lib) throw new Error(`no ELM library ${name}`);
    const executor = new cql.Executor(lib, codes, { 'Measurement Period': period });
    const source = cqlfhir.PatientSource.FHIRv401({ requireProfileTagging: false });
    source.loadBundles(request.bundles);
    const currentPatient = source.currentPatient.bind(source);
    const nextPatient = source.nextPatient.bind(source);
    source.currentPatient = () => {
      const p = currentPatient();
      return p && filterPatient(p);
    };
    source.nextPatient = () => {
      const p = nextPatient();
      return p && filterPatient(p);
    };
    const results = await executor.exec(source);
    const perPatient = {};
    for (const [pid, defs] of Object.entries(results.patientResults)) {
      const pops = {};
      for (const [k, v] of Object.entries(defs)) {
        if (process.env.CQLREF_DEBUG && Array.isArray(v)) pops[k] = v.length;
        if (typeof v === 'boolean' || (v === null && /^(Initial Population|Denominator|Numerator)/.test(k))) {
          pops[k] = v;
        }
      }
      perPatient[pid] = pops;
    }
    out[name] = perPatient;
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + '\n');
  process.exit(1);
});
