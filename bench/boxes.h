/* The benchmarks' boxes, in the input frame, the same as torch_ref.py's
 * BOXES: content does not change the cost, only the count does. */
#ifndef MS_BENCH_BOXES_H
#define MS_BENCH_BOXES_H

static const float k_boxes[3][4] = {{244.5f, 586.9f, 411.3f, 716.9f},
                                    {132.9f, 591.4f, 233.8f, 754.5f},
                                    {135.5f, 212.4f, 321.4f, 559.2f}};

#endif
