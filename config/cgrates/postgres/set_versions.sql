-- StorDB schema versions of CGRateS v0.10.4 (engine/version.go CurrentStorDBVersions), what
-- `cgr-migrator -exec=*set_versions` writes. cgr-engine refuses to start on tables without
-- them ("No versions defined"); run once, after the two create_* scripts, on an empty database.
INSERT INTO versions (item, version) VALUES
  ('CostDetails', 2), ('SessionSCosts', 3), ('CDRs', 2),
  ('TpRatingPlans', 1), ('TpFilters', 1), ('TpDestinationRates', 1), ('TpActionTriggers', 1),
  ('TpAccountActions', 1), ('TpActionPlans', 1), ('TpActions', 1), ('TpThresholds', 1),
  ('TpSuppliers', 1), ('TpStats', 1), ('TpSharedGroups', 1), ('TpRatingProfiles', 1),
  ('TpResources', 1), ('TpRates', 1), ('TpTiming', 1), ('TpResource', 1), ('TpDestinations', 1),
  ('TpRatingPlan', 1), ('TpRatingProfile', 1), ('TpChargers', 1), ('TpDispatchers', 1);
