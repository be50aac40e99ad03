"""``curator demo``: the whole job, offline, on a web of generated pictures with known truth.

    synthetic    the pictures: couples drawn happy or unhappy, near copies, broken files
    localsearch  a search engine on 127.0.0.1 that answers in Bing's format and serves them
    pipeline     crawl -> dedup -> train -> score and cross-fit -> a simulated reviewer ->
                 train again -> score new photos -> Grad-CAM, through the product's own code
    setup        what a run is given (DemoConfig) and gives back (DemoResult), its home
    report       the HTML page of what was found and learned

Outside the product's path: nothing else in curator imports it.
"""

from curator.demo.pipeline import run_demo
from curator.demo.setup import DemoConfig, DemoResult

__all__ = ["DemoConfig", "DemoResult", "run_demo"]
