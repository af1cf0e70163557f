/**
 * The layers of src/, top to bottom; imports point down only:
 *   entry (main.ts, config.ts, app.ts) → transport → interceptors →
 *   features (programs, codes, referrals, events, stats, payouts) → db, payment providers → api, platform → gen
 * Payment providers (src/payouts/providers/) talk to Stripe and Wise and import
 * only platform: no feature, no database, no API types.
 * `npm run lint:deps` fails on an import against this order and on any cycle.
 */
const layers = [
  ["entry", "^src/(main|config|app)[.]ts$"],
  ["transport", "^src/transport/"],
  ["interceptors", "^src/interceptors/"],
  ["features", "^src/((programs|codes|referrals|events|stats)/|payouts/(?!providers/))"],
  ["db", "^src/db/"],
  ["providers", "^src/payouts/providers/"],
  ["api", "^src/api/"],
  ["platform", "^src/platform/"],
  ["gen", "^src/gen/"],
];
const rank = { entry: 0, transport: 1, interceptors: 2, features: 3, db: 4, providers: 4, api: 5, platform: 5, gen: 6 };

const upward = layers.flatMap(([name, path]) => {
  const above = layers.filter(([other]) => rank[other] < rank[name]).map(([, otherPath]) => otherPath);
  if (above.length === 0) return [];
  return [
    {
      name: `no-${name}-to-above`,
      comment: `${name} must not import a layer above it`,
      severity: "error",
      from: { path },
      to: { path: above },
    },
  ];
});

module.exports = {
  forbidden: [
    { name: "no-circular", comment: "no import cycles", severity: "error", from: {}, to: { circular: true } },
    {
      name: "api-and-platform-apart",
      comment: "api and platform are both the bottom layer: neither imports the other",
      severity: "error",
      from: { path: "^src/(api|platform)/" },
      to: { path: "^src/(api|platform)/", pathNot: "^src/$1/" },
    },
    {
      name: "providers-only-platform",
      comment: "payment providers import platform and each other, nothing else of src/",
      severity: "error",
      from: { path: "^src/payouts/providers/" },
      to: { path: "^src/", pathNot: "^src/(payouts/providers|platform)/" },
    },
    ...upward,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js", ".d.ts"] },
  },
};
