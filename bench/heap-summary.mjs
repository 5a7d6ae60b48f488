#!/usr/bin/env node
/**
 * What fills a V8 heap snapshot: self size and count by node type and constructor name, largest first.
 *
 *   node bench/heap-summary.mjs <file.heapsnapshot> [top]
 */
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/heap-summary.mjs <file.heapsnapshot> [top]');
  process.exit(2);
}
const snap = JSON.parse(readFileSync(file, 'utf8'));
const meta = snap.snapshot.meta;
const fields = meta.node_fields;
const width = fields.length;
const types = meta.node_types[0];
const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
const groups = new Map();
let total = 0;
for (let i = 0; i < snap.nodes.length; i += width) {
  const type = types[snap.nodes[i + iType]];
  const name =
    type === 'object' || type === 'native' || type === 'closure' ? snap.strings[snap.nodes[i + iName]] : '';
  const key = name ? `${type} ${name}` : type;
  const size = snap.nodes[i + iSize];
  const g = groups.get(key) ?? { count: 0, bytes: 0 };
  g.count++;
  g.bytes += size;
  groups.set(key, g);
  total += size;
}
console.log(`${(total / 1e6).toFixed(1)} MB in ${(snap.nodes.length / width).toLocaleString('en-US')} nodes`);
for (const [key, g] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, Number(topArg ?? 25))) {
  console.log(
    `${(g.bytes / 1e6).toFixed(1).padStart(8)} MB ${g.count.toLocaleString('en-US').padStart(10)}  ${key.slice(0, 100)}`,
  );
}
