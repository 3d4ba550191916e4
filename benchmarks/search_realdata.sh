#!/bin/bash
# Real-data checks of the search CLI on AG News and WikiQA (outputs in $OUT, default /tmp/textsiamese-search-check). Usage: bash benchmarks/search_realdata.sh.
set -e
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}; [ -d "$D" ] || D=/work/shared/data
O=${OUT:-/tmp/textsiamese-search-check}; mkdir -p $O
ts() { /usr/bin/time -f "  [%e s, %M KB]" python -m textsiamese.cli "$@"; }
echo "== AG News: index build (descriptions)"; date
ts index build --corpus $D/agnews/agnews-title-description-train.csv --text-column description --output $O/ag.index --no-progress --device cpu
ts index info --index $O/ag.index
echo "== AG News: search with the 3,800 titles"
ts search --index $O/ag.index --queries $D/agnews/agnews-title-description-train.csv --text-column title -k 10 --json --device cpu > $O/ag-hits.jsonl
python - <<PY
import json
rows=[json.loads(l) for l in open('$O/ag-hits.jsonl')]
r1=sum(r['hits'][0]['id']==str(i+1) for i,r in enumerate(rows))/len(rows)
r10=sum(str(i+1) in [h['id'] for h in r['hits']] for i,r in enumerate(rows))/len(rows)
print(f"  {len(rows)} queries; own description at rank 1: {r1:.3f}, in top 10: {r10:.3f}")
print("  first line:", json.dumps(rows[0])[:300])
PY
echo "== AG News: mine (title -> description, 3 negatives)"
ts mine --pairs $D/agnews/agnews-title-description-train.csv --format agnews --index $O/ag.index --negatives 3 --output $O/ag-mined.csv --device cpu
head -c 600 $O/ag-mined.csv; echo
echo "== AG News: paraphrases among descriptions (>= 0.9)"
ts paraphrases --corpus $D/agnews/agnews-title-description-train.csv --text-column description --threshold 0.9 --output $O/ag-para.csv --no-progress --device cpu
wc -l $O/ag-para.csv; head -3 $O/ag-para.csv | cut -c1-300
echo "== WikiQA: index build over the distinct candidate sentences"
cut -f2 $D/wikiqa/WikiQA-train.txt | tr -d '\r' | awk 'NF' | sort -u > $O/wikiqa-answers.txt
wc -l $O/wikiqa-answers.txt
ts index build --corpus $O/wikiqa-answers.txt --output $O/wq.index --no-progress --device cpu
echo "== WikiQA: search three questions"
ts search --index $O/wq.index --query "how are glacier caves formed?" --query "what is the capital of australia" -k 3 --device cpu
echo "== WikiQA: mine hard negatives for the 1,040 label-1 pairs, reusing the index"
ts mine --pairs $D/wikiqa/WikiQA-train.txt --format wikiqa --index $O/wq.index --negatives 3 --output $O/wq-mined.jsonl --device cpu
head -2 $O/wq-mined.jsonl | cut -c1-500
python - <<PY
import json, collections
from textsiamese.data import read_pairs
p = read_pairs('/work/shared/data/wikiqa/WikiQA-train.txt', format='wikiqa')
pos = collections.defaultdict(set)
for a, b, l in zip(p.sentence1, p.sentence2, p.labels):
    if l == 1: pos[a].add(" ".join(b.split()).casefold())
bad = 0; rows = [json.loads(l) for l in open('$O/wq-mined.jsonl')]
for r in rows:
    for k in ('negative_1','negative_2','negative_3'):
        bad += " ".join(r[k].split()).casefold() in pos[r['anchor']]
print(f"  {len(rows)} mined rows; negatives that are a known positive of their question: {bad}")
PY
echo "== refusals: another model / corrupted file"
python - <<PY
import torch, textsiamese
from transformers import AutoTokenizer, BertConfig, BertModel
from textsiamese.towers import TransformerTower
tok = AutoTokenizer.from_pretrained(str(textsiamese.default_model_path()))
torch.manual_seed(0)
cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=384, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
textsiamese.SiameseModel(TransformerTower(BertModel(cfg), tok), normalize=True).save("$O/other-model")
PY
python -m textsiamese.cli search --index $O/ag.index --query "oil prices" --model $O/other-model --device cpu || echo "  exit status $?"
rm -rf $O/ag-bad.index; cp -r $O/ag.index $O/ag-bad.index
python -c "
import glob; p=glob.glob('$O/ag-bad.index/index-*.faiss')[0]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)"
python -m textsiamese.cli search --index $O/ag-bad.index --query "oil prices" --device cpu || echo "  exit status $?"
p=$(ls $O/ag-bad.index/index-*.faiss); head -c 1000000 $p > $p.cut && mv $p.cut $p
python -m textsiamese.cli search --index $O/ag-bad.index --query "oil prices" --device cpu || echo "  exit status $?"
date
