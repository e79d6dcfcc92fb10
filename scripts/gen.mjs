// Generates TypeScript (ts-proto for @grpc/grpc-js) and a descriptor set from proto/ into
// packages/proto. With --check, generates into a temporary folder and fails if the committed
// generated code differs: generated code must never drift from the contracts.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const check = process.argv.includes('--check');
const bufBin = join(root, 'node_modules', '.bin', 'buf');
const genDir = join(root, 'packages', 'proto', 'src', 'gen');
const descriptorDir = join(root, 'packages', 'proto', 'descriptor');

function generate(outDir) {
  const env = { ...process.env, PATH: `${join(root, 'node_modules', '.bin')}:${process.env.PATH}` };
  execFileSync(bufBin, ['lint', 'proto'], { cwd: root, stdio: 'inherit', env });
  execFileSync(bufBin, ['generate', 'proto', '--template', 'buf.gen.yaml', '-o', join(outDir, 'gen')], {
    cwd: root,
    stdio: 'inherit',
    env,
  });
  mkdirSync(join(outDir, 'descriptor'), { recursive: true });
  execFileSync(bufBin, ['build', 'proto', '--as-file-descriptor-set', '-o', join(outDir, 'descriptor', 'concord.binpb')], {
    cwd: root,
    stdio: 'inherit',
    env,
  });
}

function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

const tmp = mkdtempSync(join(tmpdir(), 'concord-gen-'));
try {
  generate(tmp);
  const pairs = [
    [join(tmp, 'gen'), genDir],
    [join(tmp, 'descriptor'), descriptorDir],
  ];
  if (check) {
    const drift = [];
    for (const [fresh, committed] of pairs) {
      const a = listFiles(fresh);
      let b = [];
      try {
        b = listFiles(committed);
      } catch {
        b = [];
      }
      for (const f of new Set([...a, ...b])) {
        let same = false;
        try {
          same = readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f)));
        } catch {
          same = false;
        }
        if (!same) drift.push(relative(root, join(committed, f)));
      }
    }
    if (drift.length > 0) {
      console.error(`Generated code drifted from proto/ (run \`npm run gen\` and commit):\n  ${drift.join('\n  ')}`);
      process.exit(1);
    }
    console.log('generated code matches proto/');
  } else {
    // Write only what changed, so unchanged files keep their timestamps and `tsc -b` stays incremental.
    for (const [fresh, committed] of pairs) {
      const freshFiles = listFiles(fresh);
      const committedFiles = existsSync(committed) ? listFiles(committed) : [];
      for (const f of committedFiles) if (!freshFiles.includes(f)) rmSync(join(committed, f));
      for (const f of freshFiles) {
        const target = join(committed, f);
        const data = readFileSync(join(fresh, f));
        if (existsSync(target) && readFileSync(target).equals(data)) continue;
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, data);
      }
    }
    console.log(`generated ${listFiles(genDir).length} files into ${relative(root, genDir)}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
