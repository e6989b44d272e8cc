"""glucokit: Supabase schema, row-level security and workers for personal glucose forecasts.

Informational only: glucokit is not a medical device and never gives diagnosis,
dosing or triage advice.
"""

__version__ = "0.1.0"
