"""Who is calling and what they may do: SMART scopes, verified bearer tokens and their principal."""
