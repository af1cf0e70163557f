import { manualProvider } from "./manual.ts";
import type { PayoutProvider, ProviderKind } from "./provider.ts";
import { createStripeProvider, type StripeSettings } from "./stripe.ts";
import { createWiseProvider, type WiseSettings } from "./wise.ts";

/** The providers' settings from the environment (see src/config.ts); null: no credentials. */
export type PayoutProviderSettings = {
  stripe: Omit<StripeSettings, "timeoutMs"> | null;
  wise: Omit<WiseSettings, "timeoutMs"> | null;
  /** Each request to a provider gives up after this long; its outcome is then ambiguous. */
  timeoutMs: number;
};

/**
 * The configured providers by kind. MANUAL is always there; a provider without
 * credentials is absent, and the caller refuses it with
 * PAYOUT_PROVIDER_NOT_CONFIGURED.
 */
export function buildPayoutProviders(settings: PayoutProviderSettings): ReadonlyMap<ProviderKind, PayoutProvider> {
  const providers = new Map<ProviderKind, PayoutProvider>([["MANUAL", manualProvider]]);
  if (settings.stripe !== null) providers.set("STRIPE_CONNECT", createStripeProvider({ ...settings.stripe, timeoutMs: settings.timeoutMs }));
  if (settings.wise !== null) providers.set("WISE", createWiseProvider({ ...settings.wise, timeoutMs: settings.timeoutMs }));
  return providers;
}
