"""What a claim of the config (`claims`) names, read by the rules (for the claims table's inputs) and
by claims.py (for its rows). No heavy imports: the Snakefile loads it."""


def claim_experiments(claim: dict) -> list[str]:
    """The experiments a claim compares: baseline and treatment, or the one that follows a curve."""
    return [claim["baseline"], claim["treatment"]] if claim["kind"] == "beats" else [claim["experiment"]]
