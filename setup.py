"""Packaging beside pyproject.toml: the built-in plugin folders ship inside the wheel.

`methods/`, `tasks/`, `hardware_profiles/` and `posthoc/` are top-level folders of the repository
(and are found there in a checkout); a wheel maps them to package data under
`suite/_builtin/`, where suite/paths.py finds them when no checkout is around.
"""

from setuptools import find_namespace_packages, setup

BUILTIN = ("methods", "tasks", "hardware_profiles", "posthoc")
# Every plugin folder is data; those whose names are identifiers (lora, but not lt-sft)
# would also look like namespace packages, so they are listed as such (setuptools warns
# about importable folders missing from `packages`).
PLUGIN_FOLDERS = [
    f"suite._builtin.{name}.{sub}"
    for name in BUILTIN
    for sub in find_namespace_packages(where=name, exclude=["*__pycache__*"])
]

setup(
    packages=[
        *find_namespace_packages(
            include=["suite", "suite.*", "leaderboard", "leaderboard.*"], exclude=["*__pycache__*"]
        ),
        *(f"suite._builtin.{name}" for name in BUILTIN),
        *PLUGIN_FOLDERS,
    ],
    package_dir={f"suite._builtin.{name}": name for name in BUILTIN},
    package_data={
        "suite.matrices": ["*.yaml"],
        # Published results (suite/store/published.py): Parquet files and their manifest.
        "leaderboard": ["published/*/*.parquet", "published/*/manifest.json"],
        "suite.references": ["*.yaml"],
        "suite.models": ["*.yaml", "tokenizers/*/*.json"],
        **{
            p: ["**/*.yaml", "**/*.py", "**/*.md"]
            for p in (*(f"suite._builtin.{n}" for n in BUILTIN), *PLUGIN_FOLDERS)
        },
    },
    exclude_package_data={"": ["__pycache__/*", "*.pyc"]},
)
