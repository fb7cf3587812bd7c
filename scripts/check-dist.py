#!/usr/bin/python3
"""scripts/check-dist.py — check bidguard's PGXN distribution (`make dist-check`).

Usage:
  check-dist.py [--self-test] [--build [--pg-config PG_CONFIG]] [ZIP]
  check-dist.py --meta META.json          the META.json checks alone, on a bare file
  check-dist.py --make-zip OUT --prefix NAME-VERSION/
                                          zip the working tree (`make dist DIST_WORKTREE=1`)

ZIP (made by `make dist`) is checked for:
  layout    every entry under NAME-VERSION/ (META.json's name and version);
            META.json, Makefile, NAME.control and a README at its top; no build
            products (*.o, *.so, *.bc, *.a, *.deb, *.zip, .git, the install script
            the Makefile builds, sql/NAME--DEFAULT_VERSION.sql, test results)
  META.json the PGXN Meta Spec 1.0.0 (https://pgxn.org/spec/): the required keys
            (name, abstract, maintainer, license, provides, meta-spec, version),
            each key's type, semantic versions (X.Y.Z), licenses from the spec's
            list or a {name: URL} map, provides entries with file and version
            (and the files in the zip), release_status, prereqs (phases
            configure/build/test/runtime/develop, relations requires/recommends/
            suggests/conflicts, version ranges), resources, tags, no_index; no
            unknown key anywhere except x_/X_ ones
  versions  META.json's version X.Y.Z against NAME.control's default_version
            X.Y, provides.NAME.version, the Makefile's EXTVERSION and
            debian/changelog's upstream version, when they are in the zip
  build     (--build) the zip's tree, unpacked, builds with `make` and installs
            with `make install DESTDIR=...` what CREATE EXTENSION needs
--self-test breaks copies of META.json (and of a small zip) in memory, one
problem at a time (missing name, version 1.1, an unknown license, ...): each
must be caught, and the unbroken ones must pass.

Every problem gets a line of its own; the last line is `dist: N passed, M
failed` (one per check and self-test case); the exit status is 1 when
anything failed, 2 on a usage error.  Standard library only.
"""

import argparse
import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

# ------------------------------------------------------------ the spec's types

SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)
_SEMVER_BODY = SEMVER_RE.pattern[1:-1]
# A version range: a version or 0, optionally after an operator, AND-ed with commas.
_RANGE_PART = r"(?:(?:==|!=|<=|>=|<|>)\s*)?(?:" + _SEMVER_BODY + r"|0)"
RANGE_RE = re.compile(r"^" + _RANGE_PART + r"(?:\s*,\s*" + _RANGE_PART + r")*$", re.ASCII)
# A term: at least two characters, no slash, backslash, whitespace or control character.
TERM_RE = re.compile(r"^[^/\\\s\x00-\x1f\x7f]{2,}$")
# A tag: 2 to 255 characters, no slash, backslash or control character.
TAG_RE = re.compile(r"^[^/\\\x00-\x1f\x7f]{2,255}$")
URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CUSTOM_RE = re.compile(r"^[xX]_.")

LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
REQUIRED_KEYS = ["name", "abstract", "maintainer", "license", "provides", "meta-spec", "version"]
OPTIONAL_KEYS = ["description", "generated_by", "tags", "no_index", "prereqs",
                 "release_status", "resources"]
PHASES = ["configure", "build", "test", "runtime", "develop"]
RELATIONS = ["requires", "recommends", "suggests", "conflicts"]
RELEASE_STATUSES = ["stable", "testing", "unstable"]
META_SPEC_URLS = ["https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"]


class Meta:
    """Collects the problems of one META.json document."""

    def __init__(self, files=None):
        self.errors = []
        self.files = files  # the distribution's files (relative paths), when known

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    # -- generic shapes
    def string(self, where, v, min_len=1):
        if not isinstance(v, str):
            self.err(where, f"must be a string, not {type_name(v)}")
            return False
        if len(v) < min_len:
            self.err(where, f"must be at least {min_len} character(s) long")
            return False
        return True

    def obj(self, where, v, allowed, required=(), any_of=(), custom=True):
        """An object with the allowed keys (plus x_ ones when custom)."""
        if not isinstance(v, dict):
            self.err(where, f"must be an object, not {type_name(v)}")
            return False
        for k in v:
            if k not in allowed and not (custom and CUSTOM_RE.match(k)):
                self.err(k if where == "META.json" else f"{where}.{k}", f"unknown key (allowed: {', '.join(allowed)}"
                         + (", or x_/X_ custom keys)" if custom else ")"))
        for k in required:
            if k not in v:
                self.err(where, f"missing required key '{k}'")
        if any_of and not any(k in v for k in any_of):
            self.err(where, f"needs at least one of: {', '.join(any_of)}")
        return True

    def term(self, where, v):
        if self.string(where, v, 2) and not TERM_RE.match(v):
            self.err(where, f"'{v}' is not a term (2+ characters, no slash, backslash, "
                     "whitespace or control character)")

    def semver(self, where, v):
        if self.string(where, v) and not SEMVER_RE.match(v):
            self.err(where, f"'{v}' is not a semantic version (X.Y.Z, e.g. 1.1.0)")

    def uri(self, where, v):
        if self.string(where, v) and not URI_RE.match(v):
            self.err(where, f"'{v}' is not a URI")

    def path(self, where, v, check_exists=True):
        if not self.string(where, v, 2):
            return
        parts = v.split("/")
        if v.startswith("/") or "\\" in v or ".." in parts or "" in parts:
            self.err(where, f"'{v}' is not a relative path in unix conventions")
        elif check_exists and self.files is not None and v not in self.files:
            self.err(where, f"'{v}' is not in the distribution")

    def version_range(self, where, v):
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            self.err(where, f"must be a version range string or 0, not {type_name(v)}")
        elif isinstance(v, int):
            if v != 0:
                self.err(where, f"the only number allowed is 0 (any version), not {v}")
        elif not RANGE_RE.match(v):
            self.err(where, f"'{v}' is not a version range (e.g. '1.2.0', '>= 1.2.0, < 2.0.0', 0)")

    # -- the document
    def check(self, m):
        if not isinstance(m, dict):
            self.err("META.json", f"must be a JSON object, not {type_name(m)}")
            return self.errors
        self.obj("META.json", m, REQUIRED_KEYS + OPTIONAL_KEYS, required=REQUIRED_KEYS)
        if "name" in m:
            self.term("name", m["name"])
        if "version" in m:
            self.semver("version", m["version"])
        for k in ("abstract", "description", "generated_by"):
            if k in m:
                self.string(k, m[k])
        if "maintainer" in m:
            self.maintainer(m["maintainer"])
        if "license" in m:
            self.license(m["license"])
        if "provides" in m:
            self.provides(m["provides"])
        if "meta-spec" in m:
            self.meta_spec(m["meta-spec"])
        if "release_status" in m and m["release_status"] not in RELEASE_STATUSES:
            self.err("release_status", f"{json.dumps(m['release_status'])} is not one of "
                     + ", ".join(RELEASE_STATUSES))
        if "tags" in m:
            self.tags(m["tags"])
        if "no_index" in m:
            self.no_index(m["no_index"])
        if "prereqs" in m:
            self.prereqs(m["prereqs"])
        if "resources" in m:
            self.resources(m["resources"])
        return self.errors

    def maintainer(self, v):
        if isinstance(v, list):
            if not v:
                self.err("maintainer", "must not be an empty list")
            for i, x in enumerate(v):
                self.string(f"maintainer[{i}]", x)
            unique(self, "maintainer", v)
        else:
            self.string("maintainer", v)

    def license(self, v):
        def one(where, x):
            if not isinstance(x, str) or x not in LICENSES:
                self.err(where, f"{json.dumps(x)} is not a license the spec lists "
                         "(e.g. postgresql, mit, bsd; or a {\"Name\": \"URL\"} object)")
        if isinstance(v, list):
            if not v:
                self.err("license", "must not be an empty list")
            for i, x in enumerate(v):
                one(f"license[{i}]", x)
            unique(self, "license", v)
        elif isinstance(v, dict):
            if not v:
                self.err("license", "must not be an empty object")
            for k, url in v.items():
                self.string(f"license.{k}", k)
                self.uri(f"license.{k}", url)
        else:
            one("license", v)

    def provides(self, v):
        if not isinstance(v, dict):
            self.err("provides", f"must be an object, not {type_name(v)}")
            return
        if not v:
            self.err("provides", "must name at least one extension")
        for name, ext in v.items():
            where = f"provides.{name}"
            self.term(f"provides (key {json.dumps(name)})", name)
            if not self.obj(where, ext, ["file", "version", "abstract", "docfile", "docpath"],
                            required=["file", "version"]):
                continue
            if "file" in ext:
                self.path(f"{where}.file", ext["file"])
            if "version" in ext:
                self.semver(f"{where}.version", ext["version"])
            if "abstract" in ext:
                self.string(f"{where}.abstract", ext["abstract"])
            if "docfile" in ext:
                self.path(f"{where}.docfile", ext["docfile"])
            if "docpath" in ext:
                self.string(f"{where}.docpath", ext["docpath"])

    def meta_spec(self, v):
        if not self.obj("meta-spec", v, ["version", "url"], required=["version"]):
            return
        if "version" in v and self.string("meta-spec.version", v["version"]) \
                and not re.match(r"^1\.0\.\d+$", v["version"]):
            self.err("meta-spec.version", f"'{v['version']}' is not 1.0.x (PGXN Meta Spec 1.0)")
        if "url" in v and v["url"] not in META_SPEC_URLS:
            self.err("meta-spec.url", f"{json.dumps(v['url'])} is not {META_SPEC_URLS[0]}")

    def tags(self, v):
        if not isinstance(v, list):
            self.err("tags", f"must be an array of strings, not {type_name(v)}")
            return
        if not v:
            self.err("tags", "must not be empty")
        for i, t in enumerate(v):
            if self.string(f"tags[{i}]", t, 2) and not TAG_RE.match(t):
                self.err(f"tags[{i}]", f"'{t}' is not a tag (2 to 255 characters, no slash, "
                         "backslash or control character)")
        unique(self, "tags", v)

    def no_index(self, v):
        if not self.obj("no_index", v, ["file", "directory"], any_of=["file", "directory"]):
            return
        for k in ("file", "directory"):
            if k not in v:
                continue
            x = v[k]
            if isinstance(x, list):
                if not x:
                    self.err(f"no_index.{k}", "must not be an empty list")
                for i, p in enumerate(x):
                    self.path(f"no_index.{k}[{i}]", p, check_exists=False)
                unique(self, f"no_index.{k}", x)
            else:
                self.path(f"no_index.{k}", x, check_exists=False)

    def prereqs(self, v):
        if not self.obj("prereqs", v, PHASES, any_of=PHASES):
            return
        for phase in PHASES:
            if phase not in v:
                continue
            where = f"prereqs.{phase}"
            rels = v[phase]
            if not self.obj(where, rels, RELATIONS, any_of=RELATIONS):
                continue
            for rel in RELATIONS:
                if rel not in rels:
                    continue
                deps = rels[rel]
                if not isinstance(deps, dict):
                    self.err(f"{where}.{rel}", f"must be an object mapping names to version "
                             f"ranges, not {type_name(deps)}")
                    continue
                if not deps:
                    self.err(f"{where}.{rel}", "must name at least one prerequisite")
                for dep, rng in deps.items():
                    self.term(f"{where}.{rel} (key {json.dumps(dep)})", dep)
                    self.version_range(f"{where}.{rel}.{dep}", rng)

    def resources(self, v):
        keys = ["homepage", "bugtracker", "repository"]
        if not self.obj("resources", v, keys, any_of=keys):
            return
        if "homepage" in v:
            self.uri("resources.homepage", v["homepage"])
        if "bugtracker" in v:
            b = v["bugtracker"]
            if self.obj("resources.bugtracker", b, ["web", "mailto"], any_of=["web", "mailto"]):
                if "web" in b:
                    self.uri("resources.bugtracker.web", b["web"])
                if "mailto" in b and self.string("resources.bugtracker.mailto", b["mailto"]) \
                        and not EMAIL_RE.match(b["mailto"]):
                    self.err("resources.bugtracker.mailto", f"'{b['mailto']}' is not an email address")
        if "repository" in v:
            r = v["repository"]
            if self.obj("resources.repository", r, ["url", "web", "type"]):
                if not (("url" in r and "type" in r) or "web" in r):
                    self.err("resources.repository", "needs url and type, or web")
                for k in ("url", "web"):
                    if k in r:
                        self.uri(f"resources.repository.{k}", r[k])
                if "type" in r and self.string("resources.repository.type", r["type"]) \
                        and not re.match(r"^[a-z]+$", r["type"]):
                    self.err("resources.repository.type", f"'{r['type']}' is not a lowercase "
                             "VCS name (git, svn, hg, ...)")


def type_name(v):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def unique(meta, where, items):
    seen = []
    for x in items:
        if x in seen:
            meta.err(where, f"lists {json.dumps(x)} twice")
        seen.append(x)


def check_meta(m, files=None):
    """The problems of META.json document m (files: the distribution's paths)."""
    return Meta(files).check(m)


# ------------------------------------------------------------ the zip

BUILD_PRODUCT_RE = re.compile(
    r"(\.(o|so|bc|a|deb|ddeb|zip|pyc)$|(^|/)\.git(/|$)|(^|/)\.pg-build-stamp$"
    r"|^(results|output_iso|tmp_check|tmp_check_iso|log)/|(^|/)regression\.(diffs|out)$"
    r"|^test/results/)")


def control_default_version(text):
    m = re.search(r"^\s*default_version\s*=\s*'([^']*)'", text, re.M)
    return m.group(1) if m else None


def check_zip(zf, expect_prefix=None):
    """Problems of the zip, in groups: {'layout': [...], 'META.json': [...], 'versions': [...]},
    and the META.json document (or None)."""
    problems = {"layout": [], "META.json": [], "versions": []}
    lay, ver = problems["layout"], problems["versions"]
    names = zf.namelist()
    if not names:
        lay.append("the zip is empty")
        return problems, None
    # The prefix: NAME-VERSION/ from META.json; read META.json first.
    metas = [n for n in names if re.match(r"^[^/]+/META\.json$", n)]
    meta = None
    if len(metas) != 1:
        lay.append(f"expected exactly one top-level NAME-VERSION/META.json, found {len(metas)}")
    else:
        try:
            meta = json.loads(zf.read(metas[0]).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            problems["META.json"].append(f"{metas[0]} is not valid JSON: {e}")
    prefix = expect_prefix
    if prefix is None and isinstance(meta, dict):
        prefix = f"{meta.get('name')}-{meta.get('version')}/"
    if prefix is None:
        prefix = metas[0].split("/", 1)[0] + "/" if metas else names[0].split("/", 1)[0] + "/"
    outside = [n for n in names if not n.startswith(prefix)]
    for n in outside[:10]:
        lay.append(f"'{n}' is not under {prefix}")
    if len(outside) > 10:
        lay.append(f"... and {len(outside) - 10} more entries not under {prefix}")
    files = {n[len(prefix):] for n in names if n.startswith(prefix) and not n.endswith("/")}
    name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    required = ["META.json", "Makefile"] + ([f"{name}.control"] if name else [])
    for r in required:
        if r not in files:
            lay.append(f"{prefix}{r} is missing")
    if not any(re.match(r"^README(\.[A-Za-z0-9]+)?$", f) for f in files):
        lay.append(f"{prefix}README (README, README.md, ...) is missing")
    control = None
    if name and f"{name}.control" in files:
        control = zf.read(prefix + f"{name}.control").decode("utf-8", "replace")
    dv = control_default_version(control) if control is not None else None
    products = sorted(f for f in files if BUILD_PRODUCT_RE.search(f))
    # The install script the Makefile builds (DATA_built) from sql/NAME.sql: that
    # of the control file's default_version and of the Makefile's EXTVERSION.
    makefile = zf.read(prefix + "Makefile").decode("utf-8", "replace") if "Makefile" in files else ""
    em = re.search(r"^EXTVERSION\s*[:?]?=\s*(\S+)", makefile, re.M)
    extversion = em.group(1) if em else None
    for built in sorted({v for v in (dv, extversion) if v}):
        if name and f"sql/{name}--{built}.sql" in files:
            products.append(f"sql/{name}--{built}.sql (the Makefile builds it from sql/{name}.sql)")
    for f in products:
        lay.append(f"build product or repository file in the zip: {prefix}{f}")

    if isinstance(meta, dict) or meta is not None:
        problems["META.json"].extend(check_meta(meta, files))

    # The versions agree.
    if isinstance(meta, dict) and isinstance(meta.get("version"), str):
        v = meta["version"]
        m = SEMVER_RE.match(v)
        if m:
            xy = f"{m.group(1)}.{m.group(2)}"
            if control is not None:
                if dv is None:
                    ver.append(f"{name}.control has no default_version")
                elif dv != xy:
                    ver.append(f"META.json version {v} does not match {name}.control "
                               f"default_version '{dv}' (expected '{xy}')")
            prov = meta.get("provides")
            if name and isinstance(prov, dict) and isinstance(prov.get(name), dict):
                pv = prov[name].get("version")
                if pv != v:
                    ver.append(f"provides.{name}.version {json.dumps(pv)} differs from "
                               f"META.json version {v}")
            elif name and isinstance(prov, dict):
                ver.append(f"provides has no entry for the distribution's extension '{name}'")
            if extversion is not None and extversion != xy:
                ver.append(f"Makefile EXTVERSION {extversion} does not match META.json "
                           f"version {v} (expected {xy})")
            if "debian/changelog" in files:
                first = zf.read(prefix + "debian/changelog").decode("utf-8", "replace").split("\n", 1)[0]
                cm = re.match(r"^\S+ \(([^)]+)\)", first)
                if not cm:
                    ver.append("debian/changelog: cannot read the version of its first entry")
                elif re.sub(r"-[^-]*$", "", cm.group(1)) != v:
                    ver.append(f"debian/changelog version {cm.group(1)} does not match META.json "
                               f"version {v}")
    return problems, meta


def build_from_zip(zip_path, pg_config):
    """Unpack the zip, make, make install DESTDIR: the problems (a list)."""
    problems = []
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GNUMAKEFLAGS", "MAKEOVERRIDES")}
    tmp = tempfile.mkdtemp(prefix="bidguard-dist.")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
            meta = json.loads(zf.read(next(n for n in zf.namelist()
                                           if re.match(r"^[^/]+/META\.json$", n))))
        tops = [d for d in os.listdir(tmp) if os.path.isdir(os.path.join(tmp, d))]
        if len(tops) != 1:
            return [f"the zip unpacks into {len(tops)} top directories, not 1"]
        src = os.path.join(tmp, tops[0])
        stage = os.path.join(tmp, "stage")
        jobs = str(os.cpu_count() or 2)
        for what, cmd in (("make", ["make", "-j" + jobs, f"PG_CONFIG={pg_config}"]),
                          ("make install", ["make", "install", f"DESTDIR={stage}",
                                            f"PG_CONFIG={pg_config}"])):
            r = subprocess.run(cmd, cwd=src, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                tail = "\n".join(r.stdout.splitlines()[-40:])
                return [f"`{' '.join(cmd)}` in the unpacked zip failed "
                        f"(exit {r.returncode}):\n{tail}"]
            print(f"check-dist: build: {what} in the unpacked zip: ok")

        def pgc(opt):
            return subprocess.run([pg_config, opt], stdout=subprocess.PIPE, text=True,
                                  check=True).stdout.strip()
        name = meta["name"]
        with open(os.path.join(src, f"{name}.control")) as f:
            dv = control_default_version(f.read())
        ext = stage + pgc("--sharedir") + "/extension"
        want = [stage + pgc("--pkglibdir") + f"/{name}.so", f"{ext}/{name}.control",
                f"{ext}/{name}--{dv}.sql"]
        for w in want:
            if not os.path.exists(w):
                problems.append(f"make install did not install {w[len(stage):]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return problems


# ------------------------------------------------------------ make dist DIST_WORKTREE=1

def make_worktree_zip(out, prefix, root):
    """Zip the working tree's files as git sees them (tracked and new, not ignored)."""
    r = subprocess.run(["git", "-C", root, "ls-files", "-z", "-co", "--exclude-standard"],
                       stdout=subprocess.PIPE, check=True)
    out_abs = os.path.abspath(out)
    paths = sorted(p for p in r.stdout.decode("utf-8").split("\0") if p)
    n = 0
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            full = os.path.join(root, p)
            if not os.path.isfile(full) or os.path.abspath(full) == out_abs:
                continue
            if "/" not in p and p.endswith(".zip"):
                continue  # an earlier `make dist`'s zip
            zi = zipfile.ZipInfo.from_file(full, prefix + p)
            zi.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                zf.writestr(zi, f.read())
            n += 1
    os.replace(tmp, out)
    print(f"check-dist: wrote {out}: {n} files of the working tree under {prefix}")


# ------------------------------------------------------------ self-test

def self_test(meta_path):
    """(passed, failed): each case is a META.json (or zip) that must pass or fail."""
    with open(meta_path) as f:
        base = json.load(f)
    name, version = base["name"], base["version"]

    def mutate(fn):
        m = copy.deepcopy(base)
        fn(m)
        return m

    def setp(path, value):
        def fn(m):
            d = m
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = value
        return fn

    def delp(path):
        def fn(m):
            d = m
            for k in path[:-1]:
                d = d[k]
            del d[path[-1]]
        return fn

    files = {base["provides"][name]["file"], base["provides"][name].get("docfile", "README.md")}
    # (description, META.json, must it pass?, a word the error must contain)
    cases = [
        ("the project's META.json", base, True, None),
        ("a custom x_ key", mutate(setp(["x_comment"], "fine")), True, None),
        ("a {name: URL} license", mutate(setp(["license"], {"PostgreSQL": "https://www.postgresql.org/about/licence"})), True, None),
        ("a list of licenses", mutate(setp(["license"], ["postgresql", "mit"])), True, None),
        ("version range 0", mutate(setp(["prereqs", "runtime", "requires", "plpgsql"], 0)), True, None),
        ("resources", mutate(setp(["resources"], {"homepage": "https://example.org/",
                                                   "repository": {"url": "https://example.org/x.git", "type": "git"}})), True, None),
        ("missing name", mutate(delp(["name"])), False, "name"),
        ("missing abstract", mutate(delp(["abstract"])), False, "abstract"),
        ("missing provides", mutate(delp(["provides"])), False, "provides"),
        ("missing meta-spec", mutate(delp(["meta-spec"])), False, "meta-spec"),
        ("version 1.1 (not X.Y.Z)", mutate(setp(["version"], "1.1")), False, "version"),
        ("version v1.1.0", mutate(setp(["version"], "v1.1.0")), False, "version"),
        ("version as a number", mutate(setp(["version"], 1.1)), False, "version"),
        ("unknown license", mutate(setp(["license"], "wtfpl")), False, "license"),
        ("license map with no URL", mutate(setp(["license"], {"PostgreSQL": "see LICENSE"})), False, "license"),
        ("empty license list", mutate(setp(["license"], [])), False, "license"),
        ("unknown top-level key", mutate(setp(["homepage"], "https://example.org/")), False, "unknown key"),
        ("name with a space", mutate(setp(["name"], "bid guard")), False, "name"),
        ("maintainer empty list", mutate(setp(["maintainer"], [])), False, "maintainer"),
        ("maintainer a number", mutate(setp(["maintainer"], 7)), False, "maintainer"),
        ("abstract empty", mutate(setp(["abstract"], "")), False, "abstract"),
        ("provides entry without file", mutate(delp(["provides", name, "file"])), False, "file"),
        ("provides entry without version", mutate(delp(["provides", name, "version"])), False, "version"),
        ("provides version 1.1", mutate(setp(["provides", name, "version"], "1.1")), False, "version"),
        ("provides file not in the zip", mutate(setp(["provides", name, "file"], "sql/nothere.sql")), False, "not in the distribution"),
        ("provides file absolute", mutate(setp(["provides", name, "file"], "/etc/passwd")), False, "relative path"),
        ("provides unknown key", mutate(setp(["provides", name, "doc"], "README.md")), False, "unknown key"),
        ("provides empty", mutate(setp(["provides"], {})), False, "provides"),
        ("release_status beta", mutate(setp(["release_status"], "beta")), False, "release_status"),
        ("meta-spec version 2.0.0", mutate(setp(["meta-spec", "version"], "2.0.0")), False, "meta-spec"),
        ("meta-spec without version", mutate(delp(["meta-spec", "version"])), False, "meta-spec"),
        ("prereqs phase install", mutate(setp(["prereqs", "install"], {"requires": {"PostgreSQL": "15.0.0"}})), False, "install"),
        ("prereqs relation needs", mutate(setp(["prereqs", "runtime", "needs"], {"PostgreSQL": "15.0.0"})), False, "needs"),
        ("prereqs version range ~> 1.0", mutate(setp(["prereqs", "runtime", "requires", "PostgreSQL"], "~> 1.0")), False, "version range"),
        ("prereqs version range 15", mutate(setp(["prereqs", "runtime", "requires", "PostgreSQL"], "15")), False, "version range"),
        ("prereqs relation not an object", mutate(setp(["prereqs", "test", "requires"], ["pgTAP"])), False, "requires"),
        ("tags not an array", mutate(setp(["tags"], "locking")), False, "tags"),
        ("tag too short", mutate(setp(["tags"], ["x"])), False, "tags"),
        ("tag with a slash", mutate(setp(["tags"], ["a/b"])), False, "tags"),
        ("tags twice", mutate(setp(["tags"], ["locking", "locking"])), False, "twice"),
        ("resources empty", mutate(setp(["resources"], {})), False, "resources"),
        ("resources bugtracker empty", mutate(setp(["resources"], {"bugtracker": {}})), False, "bugtracker"),
        ("resources homepage not a URI", mutate(setp(["resources"], {"homepage": "example"})), False, "URI"),
        ("resources repository url without type", mutate(setp(["resources"], {"repository": {"url": "https://example.org/x.git"}})), False, "repository"),
        ("no_index absolute path", mutate(setp(["no_index"], {"file": "/abs"})), False, "no_index"),
        ("not an object", ["name"], False, "object"),
    ]
    passed = failed = 0
    for desc, m, ok, word in cases:
        errors = check_meta(m, files)
        if ok and not errors:
            good = True
        elif not ok and errors and (word is None or any(word in e for e in errors)):
            good = True
        else:
            good = False
        if good:
            passed += 1
        else:
            failed += 1
            what = "should pass" if ok else f"should fail (on '{word}')"
            print(f"check-dist: self-test FAILED: {desc}: {what}; problems found: "
                  + ("; ".join(errors) if errors else "none"))

    # The zip checks, on small zips made here.
    def zip_of(entries, prefix=f"{name}-{version}/"):
        """A zip of entries {path: text} under prefix ("!path": outside it)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p, data in entries.items():
                zf.writestr(p[1:] if p.startswith("!") else prefix + p, data)
        buf.seek(0)
        return zipfile.ZipFile(buf)

    xy = ".".join(version.split(".")[:2])
    good_tree = {
        "META.json": json.dumps(base),
        "Makefile": f"EXTVERSION = {xy}\n",
        f"{name}.control": f"default_version = '{xy}'\n",
        "README.md": "readme\n",
        base["provides"][name]["file"]: "-- sql\n",
    }
    if "docfile" in base["provides"][name]:
        good_tree.setdefault(base["provides"][name]["docfile"], "doc\n")

    def tree():
        return dict(good_tree)

    zip_cases = [
        ("a good zip", tree(), True, None),
        ("an object file", dict(tree(), **{"src/bidguard.o": "x"}), False, "build product"),
        ("a shared library", dict(tree(), **{f"{name}.so": "x"}), False, "build product"),
        ("a .deb", dict(tree(), **{"x.deb": "x"}), False, "build product"),
        ("a .git directory", dict(tree(), **{".git/HEAD": "x"}), False, "build product"),
        ("the built install script", dict(tree(), **{f"sql/{name}--{xy}.sql": "x"}), False, "builds it"),
        ("an entry outside the prefix", dict(tree(), **{"!other/file": "x"}), False, "not under"),
        ("no Makefile", {k: v for k, v in tree().items() if k != "Makefile"}, False, "Makefile"),
        ("no README", {k: v for k, v in tree().items() if k != "README.md"}, False, "README"),
        ("no control file", {k: v for k, v in tree().items() if k != f"{name}.control"}, False, "control"),
        ("control default_version 9.9", dict(tree(), **{f"{name}.control": "default_version = '9.9'\n"}), False, "default_version"),
        ("Makefile EXTVERSION 9.9", dict(tree(), **{"Makefile": "EXTVERSION = 9.9\n"}), False, "EXTVERSION"),
        ("provides version 9.9.9", dict(tree(), **{"META.json": json.dumps(mutate(setp(["provides", name, "version"], "9.9.9")))}), False, "differs"),
        ("debian/changelog 9.9.9", dict(tree(), **{"debian/changelog": f"{name} (9.9.9) bookworm; urgency=medium\n"}), False, "changelog"),
        ("debian/changelog agrees", dict(tree(), **{"debian/changelog": f"{name} ({version}) bookworm; urgency=medium\n"}), True, None),
        ("META.json not JSON", dict(tree(), **{"META.json": "{"}), False, "JSON"),
    ]
    for desc, entries, ok, word in zip_cases:
        zf = zip_of(entries)
        problems, _ = check_zip(zf)
        errors = [e for group in problems.values() for e in group]
        if (ok and not errors) or (not ok and errors and (word is None or any(word in e for e in errors))):
            passed += 1
        else:
            failed += 1
            what = "should pass" if ok else f"should fail (on '{word}')"
            print(f"check-dist: self-test FAILED: zip with {desc}: {what}; problems found: "
                  + ("; ".join(errors) if errors else "none"))
    print(f"check-dist: self-test: {passed} of {passed + failed} cases behaved "
          f"({len(cases)} META.json, {len(zip_cases)} zip)")
    return passed, failed


# ------------------------------------------------------------ main

def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description="Check bidguard's PGXN distribution (make dist-check).")
    ap.add_argument("zip", nargs="?", help="the zip `make dist` made")
    ap.add_argument("--meta", help="check this META.json alone (the PGXN Meta Spec 1.0.0 checks)")
    ap.add_argument("--self-test", action="store_true", help="broken META.json copies must fail")
    ap.add_argument("--build", action="store_true", help="also build and install from the zip")
    ap.add_argument("--pg-config", default="pg_config", help="pg_config for --build")
    ap.add_argument("--make-zip", metavar="OUT", help="zip the working tree into OUT")
    ap.add_argument("--prefix", help="the top directory in the zip, NAME-VERSION/ (--make-zip)")
    a = ap.parse_args(argv)

    if a.make_zip:
        if not a.prefix or not a.prefix.endswith("/"):
            ap.error("--make-zip needs --prefix NAME-VERSION/")
        make_worktree_zip(a.make_zip, a.prefix, root)
        return 0
    if not (a.zip or a.meta or a.self_test):
        ap.error("give a ZIP, --meta META.json or --self-test")
    if a.build and not a.zip:
        ap.error("--build needs the ZIP")

    passed = failed = 0

    def report(check, problems, where):
        nonlocal passed, failed
        if problems:
            failed += 1
            for p in problems:
                print(f"check-dist: {where}: {check}: {p}")
        else:
            passed += 1
            print(f"check-dist: {where}: {check}: ok")

    if a.self_test:
        p, f = self_test(os.path.join(root, "META.json"))
        passed += p
        failed += f
    if a.meta:
        try:
            with open(a.meta) as fh:
                m = json.load(fh)
        except (OSError, ValueError) as e:
            report("META.json", [f"cannot read it: {e}"], a.meta)
        else:
            report("PGXN Meta Spec 1.0.0", check_meta(m), a.meta)
    if a.zip:
        try:
            zf = zipfile.ZipFile(a.zip)
        except (OSError, zipfile.BadZipFile) as e:
            report("zip", [f"cannot open it: {e}"], a.zip)
        else:
            with zf:
                problems, meta = check_zip(zf)
            report("layout", problems["layout"], a.zip)
            report("META.json (PGXN Meta Spec 1.0.0)", problems["META.json"], a.zip)
            report("versions", problems["versions"], a.zip)
            if a.build:
                if meta is None or problems["layout"]:
                    report("build", ["skipped: the zip's layout is wrong"], a.zip)
                else:
                    report("build", build_from_zip(a.zip, a.pg_config), a.zip)
    print(f"dist: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
