// Batch face generator for the cartoon-faces builder: one node process, many faces, JSON lines on stdout.
//
// usage: node facesjs_render.mjs FACESJS_PACKAGE_DIR '{"seed": S, "ranges": [[stream, start, stop], ...]}'
//
// Determinism: facesjs draws every random choice from Math.random, so for each face we replace it with a
// small seeded generator keyed by (seed, stream, index); any face can be regenerated on its own.
// Part tagging: every feature's SVG fragment is wrapped in <g class="smg-part-FEATURE"> so the Python side
// can tell which top-level group belongs to which facial part (for masks); rendering is unchanged.
//
// First line: {"type": "header", ...vocabularies}; then one {"type": "face", ...} line per face.

import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, jobText] = process.argv.slice(2);
const job = JSON.parse(jobText);
const load = (rel) => import(pathToFileURL(path.join(pkgDir, rel)).href);
const { generate, faceToSvgString, svgs, svgsIndex } = await load("build/index.js");
const { colors, numberRanges } = await load("build/generate.js");
const { races, features } = await load("build/common.js");
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));

// 32-bit integer hash (splitmix-style finaliser), then a sfc32 stream seeded from it.
function hash32(x) {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function seededRandom(seed, stream, index) {
  let a = hash32(seed ^ hash32(stream ^ hash32(index)));
  let b = hash32(a ^ 0x51ed270b);
  let c = hash32(b ^ 0x2545f491);
  let d = hash32(c ^ 0x6c8e9cf5);
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next(); // warm up away from the seeding pattern
  return next;
}

for (const feature of Object.keys(svgs)) {
  for (const id of Object.keys(svgs[feature])) {
    svgs[feature][id] = `<g class="smg-part-${feature}">${svgs[feature][id]}</g>`;
  }
}

// Backpressure: wait for the pipe to drain, so faces stream out as they are made (a plain synchronous loop
// would buffer every face in memory until the loop ends).
process.stdout.on("error", (err) => {
  if (err.code === "EPIPE") process.exit(0); // the reader stopped early: nothing left to do
  throw err;
});
const out = async (obj) => {
  if (!process.stdout.write(JSON.stringify(obj) + "\n")) await once(process.stdout, "drain");
};
await out({
  type: "header",
  facesjs_version: pkg.version,
  features,
  races,
  colors,
  numberRanges,
  svgsIndex,
});

const nativeRandom = Math.random;
for (const [stream, start, stop] of job.ranges) {
  for (let index = start; index < stop; index++) {
    const random = seededRandom(job.seed >>> 0, stream, index);
    Math.random = random;
    let face, svg, gender, race;
    try {
      gender = random() < 0.5 ? "male" : "female";
      race = races[Math.floor(random() * races.length)];
      face = generate(undefined, { gender, race });
      svg = faceToSvgString(face); // may swap the hair under a hat: `face` then records what was drawn
    } finally {
      Math.random = nativeRandom;
    }
    await out({ type: "face", stream, index, gender, race, face, svg });
  }
}
