/* The benchmarks' boxes, in the input frame, the same as torch_ref.py's
 * BOXES: content does not change the cost, only the count does. */
#ifndef MS_BENCH_BOXES_H
#define MS_BENCH_BOXES_H

#include <string.h>

#include "model/sam.h"

/* p[0..2]: one box prompt each. */
static inline void bench_box_prompts(ms_prompt p[3])
{
    static const float boxes[3][4] = {{244.5f, 586.9f, 411.3f, 716.9f},
                                      {132.9f, 591.4f, 233.8f, 754.5f},
                                      {135.5f, 212.4f, 321.4f, 559.2f}};
    memset(p, 0, 3 * sizeof *p);
    for (int i = 0; i < 3; i++) {
        p[i].has_box = 1;
        memcpy(p[i].box, boxes[i], sizeof p[i].box);
    }
}

#endif
