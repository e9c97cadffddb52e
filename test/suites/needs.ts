import { Mode } from '../harness';
import { needs } from '../infra';

/** Skips (loudly) or fails, per test/infra.ts, when a server the mode needs is absent. */
export async function needsAll(ctx: Mocha.Context, mode: Mode): Promise<void> {
  for (const what of mode.needs) await needs(ctx, what);
}
