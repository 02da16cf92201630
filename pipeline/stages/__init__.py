"""The five stages, by job type."""

from pipeline.stages.base import Stage, make_handler
from pipeline.stages.format_insights import STAGE as FORMAT_INSIGHTS
from pipeline.stages.judge_review import STAGE as JUDGE_REVIEW
from pipeline.stages.sector_research import STAGE as SECTOR_RESEARCH
from pipeline.stages.stock_analysis import STAGE as STOCK_ANALYSIS
from pipeline.stages.stock_ranking import STAGE as STOCK_RANKING

__all__ = ["STAGES", "Stage", "make_handler"]

STAGES: dict[str, Stage] = {
    s.job_type: s
    for s in (SECTOR_RESEARCH, STOCK_RANKING, STOCK_ANALYSIS, JUDGE_REVIEW, FORMAT_INSIGHTS)
}
