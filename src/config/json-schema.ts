import { z } from 'zod';
import { ConfigSchema } from './schema.ts';

/** The JSON Schema of gatehouse.yaml, for editors; generated from the zod schema. */
export function configJsonSchema(): string {
  const schema = z.toJSONSchema(ConfigSchema, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-2020-12',
  }) as Record<string, unknown>;
  return (
    JSON.stringify(
      { $id: 'https://gatehouse.dev/schema/gatehouse.schema.json', title: 'Gatehouse configuration', ...schema },
      null,
      2,
    ) + '\n'
  );
}
