#!/usr/bin/env python3
"""The deployable functions of template.yaml, and its packaged form for dist/.

  release-template.py functions TEMPLATE
      one line per function built by SAM's rust-cargolambda workflow:
      "<LogicalId> <Binary> <CodeUri>"  (what scripts/release.sh builds)

  release-template.py package TEMPLATE OUT VERSION COMMIT [SOURCE_CODE_URL]
      writes the packaged template: each such function's CodeUri becomes
      "<Binary>.zip", its BuildMethod/BuildProperties go, and the top-level
      Metadata gains AWS::ServerlessRepo::Application. The edit is made on
      the text, so every comment and the layout stay; then both files are
      parsed and compared: nothing else may differ.

  release-template.py check OUT DIST
      the packaged template names only files that exist in DIST, and has no
      BuildMethod / BuildProperties left (scripts/check-dist.sh).

Standard library only, plus PyYAML (in .local/venv with cfn-lint and sam).
"""

import copy
import os
import re
import sys

import yaml

ZIP_METHOD = "rust-cargolambda"

# What `sam publish` reads (Name, Description and Author are required; the
# patterns are the Serverless Application Repository's). No intrinsic
# functions are allowed in this block.
APP_NAME = "mturk-exclusion"
APP_AUTHOR = "mturk-exclusion-contributors"
APP_DESCRIPTION = (
    "Excludes Mechanical Turk workers from a lab's future studies the moment "
    "they submit: MTurk notifications -> SQS -> Lambda (Rust, arm64) -> "
    "qualification grant + DynamoDB ledger; plus an accept-time check URL."
)
APP_LABELS = ["mturk", "mechanical-turk", "research", "exclusion", "rust"]
# The workspace is "MIT OR Apache-2.0"; the repository accepts one SPDX id.
APP_LICENSE = "MIT"
APP_README = "README.md"


class Loader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (!Ref, !GetAtt, ...) as plain data."""


def _tagged(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"!" + tag_suffix: value}


Loader.add_multi_constructor("!", _tagged)


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)


def functions(doc):
    """[(logical id, binary, code uri)] of the rust-cargolambda functions, in template order."""
    out = []
    for lid, res in (doc.get("Resources") or {}).items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Serverless::Function":
            continue
        meta = res.get("Metadata") or {}
        if meta.get("BuildMethod") != ZIP_METHOD:
            continue
        binary = (meta.get("BuildProperties") or {}).get("Binary")
        code_uri = (res.get("Properties") or {}).get("CodeUri")
        if not isinstance(binary, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", binary):
            sys.exit(f"release-template.py: {lid}: BuildProperties.Binary is missing or not a plain name")
        if not isinstance(code_uri, str):
            sys.exit(f"release-template.py: {lid}: CodeUri is not a literal path")
        out.append((lid, binary, code_uri))
    if not out:
        sys.exit(f"release-template.py: no function with BuildMethod {ZIP_METHOD}")
    return out


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def is_content(line):
    s = line.strip()
    return s != "" and not s.startswith("#")


def block_end(lines, start, indent):
    """Index after the block whose key line is lines[start] at `indent`."""
    i = start + 1
    while i < len(lines):
        if is_content(lines[i]) and indent_of(lines[i]) <= indent:
            break
        i += 1
    # Trailing comments and blank lines belong to what follows.
    while i > start + 1 and not is_content(lines[i - 1]):
        i -= 1
    return i


def find_key(lines, key, indent, lo, hi):
    pattern = re.compile(r"^" + " " * indent + re.escape(key) + r":(\s|$)")
    for i in range(lo, hi):
        if pattern.match(lines[i]):
            return i
    return None


def package(src, out, version, commit, source_url):
    doc = load(src)
    fns = functions(doc)
    with open(src, encoding="utf-8") as f:
        lines = f.read().split("\n")

    res = find_key(lines, "Resources", 0, 0, len(lines))
    if res is None:
        sys.exit("release-template.py: no top-level Resources")
    # Bottom-up, so earlier indexes stay valid.
    spans = []
    for lid, binary, _ in fns:
        start = find_key(lines, lid, 2, res, len(lines))
        if start is None:
            sys.exit(f"release-template.py: {lid} is not at indent 2 under Resources")
        spans.append((start, block_end(lines, start, 2), lid, binary))
    for start, end, lid, binary in sorted(spans, reverse=True):
        meta = find_key(lines, "Metadata", 4, start, end)
        props = find_key(lines, "Properties", 4, start, end)
        if meta is None or props is None:
            sys.exit(f"release-template.py: {lid}: Metadata/Properties not found at indent 4")
        extra = set(doc["Resources"][lid]["Metadata"]) - {"BuildMethod", "BuildProperties"}
        if extra:
            sys.exit(f"release-template.py: {lid}: Metadata has {sorted(extra)} besides the build's keys")
        uri = find_key(lines, "CodeUri", 6, props, block_end(lines, props, 4))
        if uri is None:
            sys.exit(f"release-template.py: {lid}: CodeUri not found at indent 6")
        lines[uri] = f"      CodeUri: {binary}.zip"
        del lines[meta:block_end(lines, meta, 4)]

    app = [
        "  AWS::ServerlessRepo::Application:",
        f"    Name: {APP_NAME}",
        f"    Description: >-\n      {APP_DESCRIPTION}",
        f"    Author: {APP_AUTHOR}",
        f"    SpdxLicenseId: {APP_LICENSE}",
        f"    ReadmeUrl: {APP_README}",
        f"    Labels: [{', '.join(APP_LABELS)}]",
        f'    SemanticVersion: "{version}"',
    ]
    if source_url:
        app += [f"    HomePageUrl: {source_url}", f"    SourceCodeUrl: {source_url}"]
    meta = find_key(lines, "Metadata", 0, 0, len(lines))
    if meta is None:
        sys.exit("release-template.py: no top-level Metadata")
    lines[meta + 1:meta + 1] = "\n".join(app).split("\n")

    header = [
        f"# Packaged by scripts/release.sh {version} from commit {commit}.",
        "# Each function's CodeUri is a zip in this directory holding its arm64",
        "# `bootstrap`, built as `sam build` builds it: deploy with",
        "#   sam deploy --template-file template.yaml --guided --resolve-s3",
        "# (no Rust, cargo-lambda or zig needed). Comments below about building",
        "# describe the source tree's template.yaml.",
    ]
    text = "\n".join(header + lines)

    # The only differences from the source: the ones meant.
    want = copy.deepcopy(doc)
    for lid, binary, _ in fns:
        del want["Resources"][lid]["Metadata"]
        want["Resources"][lid]["Properties"]["CodeUri"] = f"{binary}.zip"
    got = yaml.load(text, Loader=Loader)
    sar = got.get("Metadata", {}).pop("AWS::ServerlessRepo::Application", None)
    if got != want:
        sys.exit("release-template.py: the packaged template differs from the source beyond CodeUri/Metadata")
    if not sar or sar.get("SemanticVersion") != version or sar.get("Description") != APP_DESCRIPTION:
        sys.exit("release-template.py: the AWS::ServerlessRepo::Application block did not come out as written")
    check_sar(sar)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


def check_sar(sar):
    """The Serverless Application Repository's own limits."""
    problems = []
    if not re.fullmatch(r"[a-zA-Z0-9\-]{1,140}", sar.get("Name", "")):
        problems.append("Name")
    if not 1 <= len(sar.get("Description", "")) <= 256:
        problems.append("Description (1-256 characters)")
    if not re.fullmatch(r"[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?", sar.get("Author", "")) or len(sar["Author"]) > 127:
        problems.append("Author")
    labels = sar.get("Labels", [])
    if len(labels) > 10 or not all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", x) for x in labels):
        problems.append("Labels")
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(sar.get("SemanticVersion", ""))):
        problems.append("SemanticVersion")
    if problems:
        sys.exit("release-template.py: AWS::ServerlessRepo::Application: bad " + ", ".join(problems))


def check(path, dist):
    doc = load(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    problems = []
    for word in ("BuildMethod", "BuildProperties"):
        if re.search(r"^\s*" + word + r":", text, re.M):
            problems.append(f"{word} is still in the template")
    named = []
    for lid, res in (doc.get("Resources") or {}).items():
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function":
            uri = (res.get("Properties") or {}).get("CodeUri")
            if not (isinstance(uri, str) and uri.endswith(".zip")):
                problems.append(f"{lid}: CodeUri {uri!r} is not a zip")
                continue
            named.append((lid, uri))
    sar = (doc.get("Metadata") or {}).get("AWS::ServerlessRepo::Application")
    if not sar:
        problems.append("no AWS::ServerlessRepo::Application metadata")
    else:
        check_sar(sar)
        for key in ("ReadmeUrl", "LicenseUrl"):
            if key in sar and "://" not in sar[key]:
                named.append((key, sar[key]))
    for what, name in named:
        p = os.path.join(dist, name)
        if os.path.basename(name) != name or not os.path.isfile(p):
            problems.append(f"{what}: {name} is not a file in {dist}")
    if problems:
        sys.exit("release-template.py: " + "; ".join(problems))
    for what, name in named:
        print(f"{what} -> {name} ({os.path.getsize(os.path.join(dist, name))} bytes)")


def main(argv):
    if len(argv) >= 2 and argv[0] == "functions":
        for lid, binary, uri in functions(load(argv[1])):
            print(lid, binary, uri)
    elif len(argv) in (5, 6) and argv[0] == "package":
        package(argv[1], argv[2], argv[3], argv[4], argv[5] if len(argv) == 6 else "")
    elif len(argv) == 3 and argv[0] == "check":
        check(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
