"""The rule sets shipped with outreach (TOML files beside this module; `rulesets sync` reads *.toml only)."""
