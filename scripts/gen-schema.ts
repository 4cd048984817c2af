import { writeFileSync } from 'node:fs';
import { configJsonSchema } from '../src/config/json-schema.ts';

/** `npm run schema`: regenerates schema/gatehouse.schema.json from the zod schema. */
const file = new URL('../schema/gatehouse.schema.json', import.meta.url);
writeFileSync(file, configJsonSchema());
process.stdout.write(`wrote ${file.pathname}\n`);
