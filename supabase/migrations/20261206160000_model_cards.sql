-- Model cards (docs/model-cards.md): what a model version is for and what it is not, the data it learnt from, the
-- candidates and why this one was chosen, its test metrics and band coverage, its known limits.
-- glucokit.modelops.model_card builds the card when the worker registers the version, in the same insert; the
-- rendered card (card.json, card.en.md, card.de.md) lies beside the version's files in the models bucket.
-- Versions registered before this migration have none (null): the API builds theirs from the row when read.
-- The owner reads it like every other column of ml_model (row-level security unchanged).

alter table public.ml_model add column card jsonb;

comment on column public.ml_model.card is
  'The model card''s facts (glucokit-model-card/1), written at registration; null for versions registered before '
  'model cards.';
