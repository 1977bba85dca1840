"""Derive ``extensions/data/imagenet_tags.json``: ImageNet-1k's classes as tags people use.

Run once (its output is committed; nothing runs this at run time):

    apt-get install wordnet-base          # WordNet 3.0's database (Princeton's licence)
    pip install nltk                      # its WordNetCorpusReader reads that directory
    pip download --no-deps timm -d /tmp/timm && unzip -o /tmp/timm/timm-*.whl \\
        'timm/data/_info/imagenet_synsets.txt' -d /tmp/timm
    python scripts/imagenet_tags.py /tmp/timm/timm/data/_info/imagenet_synsets.txt

Sources: the class order is timm's ``imagenet_synsets.txt`` (Apache-2.0: the 1,000 WordNet
ids of ImageNet-1k, sorted — the order every ImageNet-1k classifier's logits use); names and
hypernyms are WordNet 3.0's (the class ids *are* WordNet 3.0 noun synsets).

Each class keeps its own name (its synset's first lemma, ``tabby``) and the names of the
ancestors worth a tag: WordNet hypernyms at least ``MIN_DEPTH`` below ``entity`` that group at
least two ImageNet classes (or that are the class's own parent: espresso's ``coffee``), minus
a few that say nothing to a person (``whole``, ``instrumentality``). A tabby gets ``tabby``,
``domestic cat``, ``cat``, ``feline``, ``carnivore``, ``mammal``, ``vertebrate``, ``animal``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

MIN_DEPTH = 4
VAGUE = {
    "whole", "object", "physical entity", "entity", "living thing", "organism", "artifact",
    "instrumentality", "abstraction", "matter", "causal agent", "person", "chordate",
    "placental", "commodity", "covering", "structure", "device", "container", "equipment",
    "implement", "material", "substance", "solid", "part", "relation", "group", "thing",
    "psychological feature", "attribute", "measure", "way", "creation", "decoration",
    "protective covering", "consumer goods", "durables", "article", "mechanism", "system",
    "surface", "shape", "geological formation", "natural object", "food", "foodstuff",
    "nutriment", "plant part", "reproductive structure", "fruit", "vascular plant",
    "invertebrate", "aquatic vertebrate", "arthropod", "diapsid", "wheeled vehicle",
    "self-propelled vehicle", "craft", "conveyance", "instrument", "restraint", "support",
    "mechanical device", "electronic equipment", "electrical device", "machine", "ware",
    "cognition", "content", "merchandise", "product", "work", "obstruction", "barrier",
    "area", "region", "location", "point", "building", "housing", "establishment",
    "fluid", "liquid", "vessel", "plant organ",
}
WORDNET = Path("/usr/share/wordnet")
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()
OUT = Path(__file__).resolve().parent.parent / "extensions" / "data" / "imagenet_tags.json"


def name(synset) -> str:  # noqa: ANN001 - an nltk Synset
    return synset.lemmas()[0].name().replace("_", " ")


def main() -> None:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    # Debian's package has the database but not `lexnames` (the lexicographer files' list,
    # documented in lexnames(5WN)), which nltk's reader opens first: a copy with it added.
    root = Path(tempfile.mkdtemp(prefix="wordnet-"))
    for f in WORDNET.iterdir():
        if f.is_file():
            shutil.copy(f, root / f.name)
    (root / "lexnames").write_text("".join(
        f"{i:02d}\t{n}\t{ {'adj': 3, 'adv': 4, 'noun': 1, 'verb': 2}[n.split('.')[0]] }\n"
        for i, n in enumerate(LEXNAMES)))
    nltk.data.path.append(str(root))  # nltk reads only the roots it is told about
    # This *is* WordNet 3.0: no mapping to nltk_data's own copy (which it would look up).
    WordNetCorpusReader.map_wn = lambda self, version="wordnet": None
    wn = WordNetCorpusReader(str(root), None)
    wnids = Path(sys.argv[1]).read_text().split()
    assert len(wnids) == 1000, len(wnids)
    synsets = [wn.synset_from_pos_and_offset("n", int(w[1:])) for w in wnids]
    ancestors = [{a for path in s.hypernym_paths() for a in path if a != s} for s in synsets]
    groups = Counter(a for anc in ancestors for a in anc)
    classes = []
    broader: dict[str, set[str]] = {}  # tag → the nearest broader tags above it
    for wnid, s, anc in zip(wnids, synsets, ancestors, strict=True):
        parents = set(s.hypernyms())  # the class's own kind is a tag even if only it has it
        kept = sorted((a for a in anc if (groups[a] >= 2 or a in parents)
                       and a.min_depth() >= MIN_DEPTH and name(a) not in VAGUE),
                      key=lambda a: -a.min_depth())
        tags = list(dict.fromkeys(name(a) for a in kept if name(a) != name(s)))
        classes.append({"wnid": wnid, "name": name(s), "tags": tags})
        keep = set(kept)
        for node in (s, *kept):  # walk up from each to the first kept synsets
            todo, seen = list(node.hypernyms()), set()
            while todo:
                h = todo.pop()
                if h in seen:
                    continue
                seen.add(h)
                if h in keep:
                    if name(h) != name(node):
                        broader.setdefault(name(node), set()).add(name(h))
                else:
                    todo.extend(h.hypernyms())
    OUT.write_text(json.dumps({
        "source": "class order: timm's imagenet_synsets.txt (Apache-2.0); names and "
                  "hypernyms: WordNet 3.0 (Debian wordnet-base), via scripts/imagenet_tags.py",
        "licence": "WordNet 3.0 Copyright 2006 by Princeton University (the WordNet licence: "
                   "use, copy, modify and distribute, with this notice)",
        "classes": classes,
        "broader": {k: sorted(v) for k, v in sorted(broader.items())}},
        indent=0, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(classes)} classes, "
          f"{len({t for c in classes for t in [c['name'], *c['tags']]})} tags")


if __name__ == "__main__":
    main()
