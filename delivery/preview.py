"""The pull-request preview of one long-lived stack, as the comment the workflow keeps updated.

    python -m delivery.preview --stack staging --comment comment.md

Runs `pulumi preview --diff` with the policy pack, writes the comment (Markdown, starting with a
marker per stack so the workflow finds and edits its own comment instead of adding one per push)
and exits non-zero when the preview fails, policy violations included.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The pack through its launcher (policy/ims-core-policy says why not the folder).
POLICY_PACK = ROOT / "policy" / "ims-core-policy"
# GitHub refuses comment bodies over 65536 characters; leave room for the frame.
MAX_DIFF_CHARS = 60000


def marker(stack: str) -> str:
    return f"<!-- ims-core-preview:{stack} -->"


@dataclass(frozen=True)
class Preview:
    stack: str
    returncode: int
    output: str

    @property
    def policy_violations(self) -> list[str]:
        return [line.strip() for line in self.output.splitlines() if "[mandatory]" in line]

    def verdict(self) -> str:
        if self.returncode == 0:
            return "preview succeeded, no policy violation"
        if self.policy_violations:
            return f"preview failed: {len(self.policy_violations)} policy violation(s)"
        return "preview failed"


def run_preview(stack: str, project: Path, policy_pack: Path = POLICY_PACK) -> Preview:
    argv = [
        "pulumi", "preview", "--diff", "--stack", stack, "--non-interactive", "--color", "never",
        "--suppress-progress", "--policy-pack", str(policy_pack),
    ]  # fmt: skip
    result = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=1800)
    output = result.stdout + (f"\n{result.stderr}" if result.stderr.strip() else "")
    return Preview(stack=stack, returncode=result.returncode, output=output)


def comment(preview: Preview, context: str = "") -> str:
    """The comment body: marker, verdict, violations, then the diff in a collapsible block."""
    icon = "✅" if preview.returncode == 0 else "❌"
    text = preview.output.strip()
    if len(text) > MAX_DIFF_CHARS:
        text = (
            text[:MAX_DIFF_CHARS]
            + f"\n… cut here: {len(preview.output) - MAX_DIFF_CHARS} more characters in the job log"
        )
    lines = [
        marker(preview.stack),
        f"### {icon} `pulumi preview --diff` of stack `{preview.stack}`: {preview.verdict()}",
    ]
    if context:
        lines.append(context)
    if preview.policy_violations:
        lines += ["", "Policy violations:", *[f"- `{v}`" for v in preview.policy_violations]]
    lines += [
        "",
        "<details open><summary>Diff</summary>",
        "",
        "```diff",
        text.replace("```", "``\u200b`"),
        "```",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m delivery.preview", description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", required=True)
    p.add_argument("--comment", type=Path, required=True, help="where to write the comment body (Markdown)")
    p.add_argument("--project", type=Path, default=ROOT)
    p.add_argument("--policy-pack", type=Path, default=POLICY_PACK)
    p.add_argument("--context", default="", help="a line under the title, e.g. the commit previewed")
    args = p.parse_args(argv)
    preview = run_preview(args.stack, args.project.resolve(), args.policy_pack.resolve())
    args.comment.write_text(comment(preview, args.context))
    print(preview.output)
    print(f"{args.stack}: {preview.verdict()}", file=sys.stderr)
    return 0 if preview.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
