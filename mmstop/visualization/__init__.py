# Copyright (c) mmstop contributors. All rights reserved.
from .prompts import (highlight_pixels, plot_ssp_view, plot_stop_view,
                      plot_summary, region_mosaic, ssp_prompt_maps,
                      stop_prompt_maps)

__all__ = [
    'highlight_pixels', 'plot_ssp_view', 'plot_stop_view', 'plot_summary',
    'region_mosaic', 'ssp_prompt_maps', 'stop_prompt_maps'
]
