/**
 * -----------------------------------------------------------------------------
 * Observations: the received resource only where the columns do not give it back
 * -----------------------------------------------------------------------------
 * The resource was most of a stored reading (~720 of ~975 bytes of row for a
 * CGM reading). Ingest now stores it only when the Observation that export
 * rebuilds from the columns (glucokit.fhir.stored.rebuilt) is not exactly the
 * received one (equal as parsed JSON); otherwise it stores null and export
 * rebuilds it. The column was always nullable and its check lets null
 * through; what it means changes, so its comment says so. Rows stored before
 * keep their resource (export gives it back as before).
 */

comment on column public.observation.resource is
  'The FHIR resource as received; null where the columns rebuild it exactly (glucokit.fhir.stored), as export does.';
